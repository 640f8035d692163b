package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// The crash harness for exposure events: a reconciliation that writes the
// "added" events of a new breach (24 events, three transactions), and one
// that writes the "removed" events of its delete, are SIGKILLed after
// each transaction of events or after the marks. At restart a
// reconciliation completes the work: every watched account of the breach
// is reported exactly as the ground truth says, none lost, and an event
// repeated carries the same id and the same accounts.

var crashWatchOps = []string{"reconcile-added", "reconcile-removed"}

// watchWorld: Users holds 15,000 accounts, Staff 6,000 of them; Sega
// holds 12,000 of Users (4,800 of them Staff) among 20,000 others.
func watchWorld() (users, staff, sega []breachd.Digest) {
	users = storetest.Digests("users", 15000)
	staff = users[9000:]
	sega = append(slices.Clone(users[:12000]), storetest.Digests("others", 20000)...)
	return users, staff, sega
}

func openWatchWorld(tb testing.TB, dir string) (*store.Store, *store.Watchlists, func()) {
	tb.Helper()
	emails := open(tb, store.EmailDir(dir), options(0))
	w, err := store.OpenWatchlists(context.Background(), store.WatchDir(dir), emails, options(0))
	if err != nil {
		tb.Fatal(err)
	}
	return emails, w, func() { w.Close(); emails.Close() }
}

func crashWatchWork(ctx context.Context, w *store.Watchlists) error {
	_, err := w.Reconcile(ctx)
	return err
}

// checkEvents reads every event and compares what they report with the
// truth: accounts per type and watchlist for Sega; ids never reused for
// other content.
func checkEvents(t *testing.T, w *store.Watchlists, when string, removed bool) {
	t.Helper()
	users, staff, _ := watchWorld()
	byID := map[string]string{}
	got := map[string]map[string]bool{}
	eachEvent(t, w, 0, 100, func(_ breachd.OutboxEvent, ev breachd.Event) {
		content := ev.Type + ev.Subject + ev.Data.Breach + strings.Join(ev.Data.Accounts, ",")
		if prev, ok := byID[ev.ID]; ok && prev != content {
			t.Fatalf("%s: event %s repeated with other content", when, ev.ID)
		}
		byID[ev.ID] = content
		k := ev.Type + " " + ev.Subject + " " + ev.Data.Breach
		if got[k] == nil {
			got[k] = map[string]bool{}
		}
		for _, a := range ev.Data.Accounts {
			got[k][a] = true
		}
	})
	want := map[string][]string{
		breachd.EventExposureAdded + " Users Sega": hexes(users[:12000]),
		breachd.EventExposureAdded + " Staff Sega": hexes(staff[:3000]),
	}
	if removed {
		want[breachd.EventExposureRemoved+" Users Sega"] = want[breachd.EventExposureAdded+" Users Sega"]
		want[breachd.EventExposureRemoved+" Staff Sega"] = want[breachd.EventExposureAdded+" Staff Sega"]
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d series of events, want %d", when, len(got), len(want))
	}
	for k, accounts := range want {
		if len(got[k]) != len(accounts) {
			t.Fatalf("%s: %s: %d accounts, want %d", when, k, len(got[k]), len(accounts))
		}
		for _, a := range accounts {
			if !got[k][a] {
				t.Fatalf("%s: %s lacks an account", when, k)
			}
		}
	}
}

func TestCrashWatch(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	t.Parallel()
	ctx := context.Background()
	root := t.TempDir()
	imported, deleted := filepath.Join(root, "imported"), filepath.Join(root, "deleted")
	emails, w, done := openWatchWorld(t, imported)
	users, staff, sega := watchWorld()
	for name, ds := range map[string][]breachd.Digest{"Users": users, "Staff": staff} {
		if _, err := w.Create(ctx, name); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Add(ctx, name, storetest.Batches(ds, 5000, nil)); err != nil {
			t.Fatal(err)
		}
	}
	importAll(t, emails, storetest.Breach("Sega"), sega, 8000) // not yet reconciled
	done()
	copyDir(t, imported, deleted)
	emails, w, done = openWatchWorld(t, deleted)
	if err := crashWatchWork(ctx, w); err != nil {
		t.Fatal(err)
	}
	if _, _, err := emails.DeleteBreach(ctx, "Sega"); err != nil {
		t.Fatal(err)
	}
	done()

	runs := max(2*len(crashWatchOps), crashRuns(t, len(crashOps))/len(crashOps)*2*len(crashWatchOps))
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 17))
	points := []string{"events-written:1", "events-written:2", "events-written:3", "reconcile-done:1"}
	kills := map[string]int{}
	for run := range runs {
		op := crashWatchOps[run%len(crashWatchOps)]
		dir := filepath.Join(root, fmt.Sprintf("run-%d", run))
		from := imported
		if op == "reconcile-removed" {
			from = deleted
		}
		copyDir(t, from, dir)
		point := points[r.IntN(len(points))]
		switch err := crashChild(dir, op, point).Run(); {
		case killed(err):
			kills[op+" at "+point]++
		case err != nil:
			t.Fatalf("run %d (%s): child failed: %v", run, op, err)
		}
		when := fmt.Sprintf("run %d (%s killed at %s)", run, op, point)
		_, w, done := openWatchWorld(t, dir)
		if err := crashWatchWork(ctx, w); err != nil {
			t.Fatalf("%s: reconciling again: %v", when, err)
		}
		checkEvents(t, w, when, op == "reconcile-removed")
		if st, err := w.Reconcile(ctx); err != nil || st.Events != 0 {
			t.Fatalf("%s: a third reconciliation wrote %d events (%v)", when, st.Events, err)
		}
		done()
		os.RemoveAll(dir)
	}
	t.Logf("%d runs, killed: %v", runs, kills)
}
