package store_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/store/storetest"
)

// TestWatchWhileChanging reconciles in a loop, as the daemon does after
// every commit, while random imports (new breaches and more accounts for
// live ones) and deletes commit beside it; then, once a last reconcile
// has run, checks the outbox: each watched account of a live breach was
// reported added once and never removed; a deleted breach's were reported
// added and removed alike, and all of one import's or none (a reconcile
// that diffed it before the delete, or none did). No breach name is used
// twice, so that each account's events are of one import. The sequence
// comes from a seed named in any failure (storetest.Steps).
//
// It cannot force a delete's collection to meet a diff part way (imports
// of up to 12,000 accounts make collections of two batches, but the
// window is narrow): TestReconcileAcrossDelete does, with hook points. A
// reconcile that marks as diffed the imports committed while it ran fails
// it on every run.
func TestWatchWhileChanging(t *testing.T) {
	t.Parallel()
	rec, rng := storetest.NewSteps(t, 0x77636f6e63)
	ctx := context.Background()
	emails, w, done := openWatchWorld(t, t.TempDir())
	defer done()
	pool := storetest.Digests("watch-concurrent", 20000)
	watched := map[int]bool{}
	if _, err := w.Create(ctx, "users"); err != nil {
		t.Fatal(err)
	}
	var users []breachd.Digest
	for j := range pool {
		if rng.IntN(3) == 0 {
			watched[j] = true
			users = append(users, pool[j])
		}
	}
	if _, err := w.Add(ctx, "users", storetest.Batches(users, 500, nil)); err != nil {
		t.Fatal(err)
	}

	// The imports: each brings the accounts new to its breach.
	type imported struct {
		breach string
		rows   []int
	}
	var imports []*imported
	live := map[string]map[int]bool{}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var reconciles atomic.Int64
	var reconcileErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			if _, err := w.Reconcile(ctx); err != nil {
				reconcileErr = err
				return
			}
			reconciles.Add(1)
		}
	}()
	next := 0
	for rec.Step = range 20 {
		var names []string
		for name := range live {
			names = append(names, name)
		}
		switch x := rng.IntN(100); {
		case x < 25 && len(names) > 0:
			name := names[rng.IntN(len(names))]
			rec.Did("delete %s", name)
			if _, _, err := emails.DeleteBreach(ctx, name); err != nil {
				rec.Fatalf("DeleteBreach = %v", err)
			}
			delete(live, name)
		default:
			name := fmt.Sprintf("B%d", next)
			if x < 50 && len(names) > 0 {
				name = names[rng.IntN(len(names))] // more accounts for a live breach
			} else {
				next++
			}
			idx := make([]int, 1+rng.IntN(12000))
			ds := make([]breachd.Digest, len(idx))
			for i := range idx {
				idx[i] = rng.IntN(len(pool))
				ds[i] = pool[idx[i]]
			}
			rec.Did("import %d accounts into %s", len(idx), name)
			if _, err := emails.Import(ctx, storetest.Breach(name), storetest.Batches(ds, 500, nil)); err != nil {
				rec.Fatalf("Import = %v", err)
			}
			if live[name] == nil {
				live[name] = map[int]bool{}
			}
			im := &imported{breach: name}
			for _, j := range idx {
				if !live[name][j] {
					live[name][j] = true
					im.rows = append(im.rows, j)
				}
			}
			imports = append(imports, im)
		}
	}
	stop.Store(true)
	wg.Wait()
	if reconcileErr != nil {
		t.Fatalf("a reconcile beside the changes: %v", reconcileErr)
	}
	if _, err := w.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d reconciles beside %d imports and deletes", reconciles.Load(), rec.Step+1)

	index := map[string]int{}
	for j, d := range pool {
		index[hex.EncodeToString(d[:])] = j
	}
	added, removed := map[string]int{}, map[string]int{} // by breach and account
	eachEvent(t, w, 0, 100, func(_ breachd.OutboxEvent, ev breachd.Event) {
		for _, a := range ev.Data.Accounts {
			k := fmt.Sprintf("%s %d", ev.Data.Breach, index[a])
			switch ev.Type {
			case breachd.EventExposureAdded:
				added[k]++
			case breachd.EventExposureRemoved:
				removed[k]++
			}
		}
	})
	for _, im := range imports {
		_, alive := live[im.breach]
		reported := -1 // whether this import's watched accounts were reported added: all or none
		for _, j := range im.rows {
			if !watched[j] {
				continue
			}
			k := fmt.Sprintf("%s %d", im.breach, j)
			a, r := added[k], removed[k]
			switch {
			case alive && (a != 1 || r != 0):
				rec.Fatalf("%s, live: watched account %d reported added %d and removed %d times, want once and never", im.breach, j, a, r)
			case !alive && (a > 1 || r != a):
				rec.Fatalf("%s, deleted: watched account %d reported added %d and removed %d times, want both once or never", im.breach, j, a, r)
			case !alive && reported >= 0 && a != reported:
				rec.Fatalf("%s, deleted: one import's watched accounts were reported in part (account %d: %d)", im.breach, j, a)
			}
			reported = a
		}
	}
}
