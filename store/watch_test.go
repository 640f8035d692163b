package store_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/service"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

func openWatch(tb testing.TB, dir string, emails *store.Store) *store.Watchlists {
	tb.Helper()
	w, err := store.OpenWatchlists(context.Background(), dir, emails, options(0))
	if err != nil {
		tb.Fatal(err)
	}
	return w
}

// eachEvent calls fn with every event after position after, in order,
// read limit at a time and parsed, and returns the last one's position.
func eachEvent(tb testing.TB, w *store.Watchlists, after uint64, limit int, fn func(e breachd.OutboxEvent, ev breachd.Event)) uint64 {
	tb.Helper()
	for {
		evs, err := w.EventsAfter(context.Background(), "", after, limit)
		if err != nil {
			tb.Fatal(err)
		}
		if len(evs) == 0 {
			return after
		}
		for _, e := range evs {
			var ev breachd.Event
			if err := json.Unmarshal(e.Body, &ev); err != nil {
				tb.Fatalf("event %d: %v", e.Seq, err)
			}
			fn(e, ev)
			after = e.Seq
		}
	}
}

// exposures reads every event after after, and returns the accounts of
// each (type, watchlist, breach), with how many events carried them.
func exposures(tb testing.TB, w *store.Watchlists, after uint64) (map[string][]string, int, uint64) {
	tb.Helper()
	got := map[string][]string{}
	n := 0
	after = eachEvent(tb, w, after, 7, func(e breachd.OutboxEvent, ev breachd.Event) {
		if ev.ID != e.ID || ev.Subject != e.Watchlist || ev.SpecVersion != "1.0" || len(ev.Data.Accounts) > breachd.MaxEventAccounts {
			tb.Fatalf("event %d: %+v", e.Seq, ev)
		}
		k := ev.Type + " " + ev.Subject + " " + ev.Data.Breach
		got[k] = append(got[k], ev.Data.Accounts...)
		n++
	})
	return got, n, after
}

func hexes(ds []breachd.Digest) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = hex.EncodeToString(d[:])
	}
	slices.Sort(out)
	return out
}

// TestWatchEvents: an import produces "added" events for exactly the
// watched accounts it holds, once; deleting the breach produces "removed"
// events for them; a watchlist sees only imports committed after it; the
// watchlist operations keep their counts.
func TestWatchEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	emails := open(t, store.EmailDir(dir), options(0))
	defer emails.Close()
	w := openWatch(t, store.WatchDir(dir), emails)
	defer func() { w.Close() }()

	old := storetest.Digests("old", 3000)
	importAll(t, emails, storetest.Breach("Old"), old, 1000)
	if _, err := w.Create(ctx, "users"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Create(ctx, "users"); !errors.Is(err, breachd.ErrAlreadyExists) {
		t.Fatalf("a second create: %v", err)
	}
	if _, err := w.Create(ctx, "staff"); err != nil {
		t.Fatal(err)
	}
	users := append(slices.Clone(old[:500]), storetest.Digests("users", 3000)...)
	if n, err := w.Add(ctx, "users", storetest.Batches(users, 4096, nil)); err != nil || n != uint64(len(users)) {
		t.Fatalf("Add = %d, %v", n, err)
	}
	staff := storetest.Digests("users", 2500)[:2500] // all also users
	if _, err := w.Add(ctx, "staff", storetest.Batches(staff, 1000, nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Add(ctx, "nobody", storetest.Batches(staff, 1000, nil)); !errors.Is(err, breachd.ErrUnknownWatchlist) {
		t.Fatalf("add to an unknown watchlist: %v", err)
	}
	st, err := w.Reconcile(ctx)
	if err != nil || st.Events != 0 {
		t.Fatalf("reconcile before any new import: %+v, %v (Old predates the watchlists)", st, err)
	}

	// Sega: 1,500 of users (all of them staff too) among 3,000 others:
	// two events of at most 1,000 accounts for each watchlist.
	sega := append(storetest.Digests("others", 3000), users[1000:2500]...)
	importAll(t, emails, storetest.Breach("Sega"), sega, 2000)
	st, err = w.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, n, cursor := exposures(t, w, 0)
	wantUsers, wantStaff := hexes(users[1000:2500]), hexes(users[1000:2500][:0])
	for _, d := range users[1000:2500] {
		if slices.Contains(staff, d) {
			wantStaff = append(wantStaff, hex.EncodeToString(d[:]))
		}
	}
	slices.Sort(wantStaff)
	if !slices.Equal(got[breachd.EventExposureAdded+" users Sega"], wantUsers) || !slices.Equal(got[breachd.EventExposureAdded+" staff Sega"], wantStaff) || len(got) != 2 {
		t.Fatalf("added: %d keys, users %d (want %d), staff %d (want %d)", len(got), len(got[breachd.EventExposureAdded+" users Sega"]), len(wantUsers),
			len(got[breachd.EventExposureAdded+" staff Sega"]), len(wantStaff))
	}
	if n != 4 || st.Added != uint64(len(wantUsers)+len(wantStaff)) {
		t.Fatalf("%d events, stats %+v", n, st)
	}
	if again, err := w.Reconcile(ctx); err != nil || again.Events != 0 {
		t.Fatalf("a second reconcile: %+v, %v", again, err)
	}
	page, err := w.EventsAfter(ctx, "staff", 0, 100)
	if err != nil || len(page) != 2 || page[0].Watchlist != "staff" || page[1].Watchlist != "staff" {
		t.Fatalf("staff's events: %d, %v", len(page), err)
	}

	// 300 leave users; deleting Sega reports the other 1,200 of users.
	if n, err := w.Remove(ctx, "users", storetest.Batches(users[1000:1300], 100, nil)); err != nil || n != 300 {
		t.Fatalf("Remove = %d, %v", n, err)
	}
	if wl, _ := w.Watchlist(ctx, "users"); wl.Accounts != int64(len(users)-300) {
		t.Fatalf("users holds %d", wl.Accounts)
	}
	if _, _, err := emails.DeleteBreach(ctx, "Sega"); err != nil {
		t.Fatal(err)
	}
	// Reopened first: what is pending survives a restart.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w = openWatch(t, store.WatchDir(dir), emails)
	if _, err := w.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	got, _, _ = exposures(t, w, cursor)
	if !slices.Equal(got[breachd.EventExposureRemoved+" users Sega"], hexes(users[1300:2500])) || !slices.Equal(got[breachd.EventExposureRemoved+" staff Sega"], wantStaff) || len(got) != 2 {
		t.Fatalf("removed: %d keys, users %d", len(got), len(got[breachd.EventExposureRemoved+" users Sega"]))
	}

	// A breach imported again under the same name is new.
	_, _, cursor = exposures(t, w, 0)
	importAll(t, emails, storetest.Breach("Sega"), users[2000:2010], 10)
	if err := w.Delete(ctx, "staff"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	got, _, _ = exposures(t, w, cursor)
	if !slices.Equal(got[breachd.EventExposureAdded+" users Sega"], hexes(users[2000:2010])) || len(got) != 1 {
		t.Fatalf("Sega again, staff deleted: %d series", len(got))
	}
	if wls, _ := w.List(ctx); len(wls) != 1 || wls[0].Name != "users" {
		t.Fatalf("List = %+v", wls)
	}
}

// TestPruneEvents: events are pruned only once every endpoint has had
// them and they are older than the cutoff; a pull reader's cursor older
// than what was pruned is refused with what to do, and one without a
// cursor starts at the oldest event kept.
func TestPruneEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	emails := open(t, store.EmailDir(dir), options(0))
	defer emails.Close()
	w := openWatch(t, store.WatchDir(dir), emails)
	defer w.Close()
	users := storetest.Digests("users", 3000)
	w.Create(ctx, "users")
	if _, err := w.Add(ctx, "users", storetest.Batches(users, 1000, nil)); err != nil {
		t.Fatal(err)
	}
	importAll(t, emails, storetest.Breach("Sega"), users, 1000) // three events
	if st, err := w.Reconcile(ctx); err != nil || st.Events != 3 {
		t.Fatalf("Reconcile = %+v, %v", st, err)
	}
	svc := service.New(emails)
	svc.OpenWatchlists(w, []string{"a", "b"})
	w.Advance(ctx, "a", 3, nil)
	w.Advance(ctx, "b", 1, nil)
	if n, err := w.PruneEvents(ctx, time.Now().Add(-time.Hour), []string{"a", "b"}); err != nil || n != 0 {
		t.Fatalf("pruned %d events newer than the cutoff (%v)", n, err)
	}
	if n, err := w.PruneEvents(ctx, time.Now().Add(time.Hour), []string{"a", "b"}); err != nil || n != 1 {
		t.Fatalf("pruned %d events, want the one both endpoints had (%v)", n, err)
	}
	if _, err := svc.WatchEvents(ctx, "users", "0", 10); !errors.Is(err, breachd.ErrFailedPrecondition) || !strings.Contains(err.Error(), "cursor 1") {
		t.Fatalf("a cursor before what was pruned: %v", err)
	}
	page, err := svc.WatchEvents(ctx, "users", "", 10)
	if err != nil || len(page.Events) != 2 || page.Events[0].Seq != 2 || page.Next != "3" {
		t.Fatalf("from the oldest kept: %d events, next %s, %v", len(page.Events), page.Next, err)
	}
	if page, err := svc.WatchEvents(ctx, "users", "1", 10); err != nil || len(page.Events) != 2 {
		t.Fatalf("from cursor 1: %d events, %v", len(page.Events), err)
	}
}

// TestWatchlistRecreated: a watchlist deleted and created again under its
// name lists only its own events, not those of the one deleted (which
// stay in the outbox for the endpoints).
func TestWatchlistRecreated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	emails := open(t, store.EmailDir(dir), options(0))
	defer emails.Close()
	w := openWatch(t, store.WatchDir(dir), emails)
	defer func() { w.Close() }()
	first, second := storetest.Digests("first", 10), storetest.Digests("second", 10)
	names := func() []string {
		t.Helper()
		evs, err := w.EventsAfter(ctx, "users", 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range evs {
			var ev breachd.Event
			json.Unmarshal(e.Body, &ev)
			out = append(out, ev.Data.Breach)
		}
		return out
	}
	for i, tc := range []struct {
		watched []breachd.Digest
		breach  string
	}{{first, "Alpha"}, {second, "Beta"}} {
		if i > 0 {
			if err := w.Delete(ctx, "users"); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.Create(ctx, "users"); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Add(ctx, "users", storetest.Batches(tc.watched, 10, nil)); err != nil {
			t.Fatal(err)
		}
		importAll(t, emails, storetest.Breach(tc.breach), tc.watched, 10)
		if _, err := w.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		if got := names(); !slices.Equal(got, []string{tc.breach}) {
			t.Fatalf("watchlist users, created %d times: events of %v, want %s's alone", i+1, got, tc.breach)
		}
	}
	// The deleted watchlist's event is still in the outbox.
	if evs, err := w.EventsAfter(ctx, "", 0, 100); err != nil || len(evs) != 2 {
		t.Fatalf("the outbox holds %d events (%v), want both", len(evs), err)
	}
}
