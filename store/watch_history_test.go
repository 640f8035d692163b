package store_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// TestWatchHistory runs a random sequence of breach imports and deletes,
// watchlist creations, additions, removals and deletes, reconciles and
// reopens, on a plain corpus and on a keyed one, and after each step
// compares every exposure event in the outbox with a model: a reconcile
// reports, for each import committed since the last and still in the
// catalogue, the accounts it brought into its breach that are on a
// watchlist then ("added"), and for each account so reported whose breach
// has since been deleted, "removed"; taking an account off a watchlist,
// or deleting the watchlist, drops what was reported for it without an
// event. The sequence comes from a seed drawn afresh each run and named in
// any failure (storetest.Steps).
func TestWatchHistory(t *testing.T) {
	t.Parallel()
	for _, keyed := range []bool{false, true} {
		t.Run(fmt.Sprintf("keyed=%v", keyed), func(t *testing.T) {
			t.Parallel()
			rec, rng := storetest.NewSteps(t, 0x7761746368)
			h := &watchHistory{Steps: rec, t: t, rng: rng, pool: storetest.Digests("watch-history", 600),
				breaches: map[string]map[int]bool{}, wls: map[string]map[int]bool{}, x: map[exposureKey]bool{}, want: map[string]int{}}
			o := options(0)
			if keyed {
				o.IndexKey = newIndexKey(t)
			}
			data := t.TempDir()
			h.open(data, o)
			defer h.close()
			for h.Step = range 50 {
				switch x := h.rng.IntN(100); {
				case x < 22:
					h.importBreach()
				case x < 32:
					h.deleteBreach()
				case x < 40:
					h.create()
				case x < 55:
					h.add()
				case x < 62:
					h.remove()
				case x < 66:
					h.deleteWatchlist()
				case x < 92:
					h.Did("reconcile")
					if _, err := h.w.Reconcile(context.Background()); err != nil {
						h.Fatalf("Reconcile = %v", err)
					}
					h.reconcile()
				default:
					h.close()
					h.open(data, o)
					h.Did("reopen")
				}
				h.check()
			}
		})
	}
}

// watchHistory is the model: each breach's accounts, each watchlist's,
// the imports (segments) in commit order, the exposures reported and not
// withdrawn, and every event the outbox should hold, counted by type,
// watchlist, breach and account.
type watchHistory struct {
	*storetest.Steps
	t        *testing.T
	rng      *rand.Rand
	pool     []breachd.Digest
	breaches map[string]map[int]bool
	wls      map[string]map[int]bool
	segs     []*watchSeg
	x        map[exposureKey]bool
	want     map[string]int
	got      map[string]int
	after    uint64
	emails   *store.Store
	w        *store.Watchlists
}

type watchSeg struct {
	breach       string
	rows         []int // the accounts it brought into its breach
	live, diffed bool
}

type exposureKey struct {
	wl      string
	account int
	seg     *watchSeg
}

var (
	watchHistoryBreaches = []string{"Sega", "Adobe", "Combo"}
	watchHistoryLists    = []string{"users", "staff", "vips"}
)

func (h *watchHistory) open(data string, o store.Options) {
	h.t.Helper()
	var err error
	if h.emails, err = store.Open(context.Background(), store.EmailDir(data), o); err != nil {
		h.Fatalf("Open = %v", err)
	}
	h.w = openWatch(h.t, store.WatchDir(data), h.emails)
}

func (h *watchHistory) close() {
	h.t.Helper()
	if err := errors.Join(h.w.Close(), h.emails.Close()); err != nil {
		h.Fatalf("Close = %v", err)
	}
}

func (h *watchHistory) sample(n int) []int {
	out := make([]int, 1+h.rng.IntN(n))
	for i := range out {
		out[i] = h.rng.IntN(len(h.pool))
	}
	return out
}

func (h *watchHistory) digests(idx []int) []breachd.Digest {
	out := make([]breachd.Digest, len(idx))
	for i, j := range idx {
		out[i] = h.pool[j]
	}
	return out
}

func (h *watchHistory) importBreach() {
	h.t.Helper()
	name, idx := watchHistoryBreaches[h.rng.IntN(len(watchHistoryBreaches))], h.sample(250)
	h.Did("import %d accounts into %s", len(idx), name)
	if _, err := h.emails.Import(context.Background(), storetest.Breach(name), storetest.Batches(h.digests(idx), 64, nil)); err != nil {
		h.Fatalf("Import = %v", err)
	}
	if h.breaches[name] == nil {
		h.breaches[name] = map[int]bool{}
	}
	seg := &watchSeg{breach: name, live: true}
	for _, j := range idx {
		if !h.breaches[name][j] {
			h.breaches[name][j] = true
			seg.rows = append(seg.rows, j)
		}
	}
	h.segs = append(h.segs, seg)
}

func (h *watchHistory) deleteBreach() {
	h.t.Helper()
	name := watchHistoryBreaches[h.rng.IntN(len(watchHistoryBreaches))]
	h.Did("delete breach %s", name)
	_, _, err := h.emails.DeleteBreach(context.Background(), name)
	if h.breaches[name] == nil {
		if !errors.Is(err, breachd.ErrNotFound) {
			h.Fatalf("DeleteBreach(%s), unknown, = %v", name, err)
		}
		return
	}
	if err != nil {
		h.Fatalf("DeleteBreach(%s) = %v", name, err)
	}
	delete(h.breaches, name)
	for _, s := range h.segs {
		if s.breach == name {
			s.live = false
		}
	}
}

func (h *watchHistory) create() {
	h.t.Helper()
	name := watchHistoryLists[h.rng.IntN(len(watchHistoryLists))]
	h.Did("create watchlist %s", name)
	_, err := h.w.Create(context.Background(), name)
	h.reconcile() // Create reconciles first, whether or not the watchlist exists
	if h.wls[name] != nil {
		if !errors.Is(err, breachd.ErrAlreadyExists) {
			h.Fatalf("Create(%s), which exists, = %v, want ALREADY_EXISTS", name, err)
		}
		return
	}
	if err != nil {
		h.Fatalf("Create(%s) = %v", name, err)
	}
	h.wls[name] = map[int]bool{}
}

func (h *watchHistory) add() {
	h.t.Helper()
	name, idx := watchHistoryLists[h.rng.IntN(len(watchHistoryLists))], h.sample(150)
	h.Did("add %d accounts to watchlist %s", len(idx), name)
	n, err := h.w.Add(context.Background(), name, storetest.Batches(h.digests(idx), 50, nil))
	if h.wls[name] == nil {
		if !errors.Is(err, breachd.ErrUnknownWatchlist) {
			h.Fatalf("Add to %s, unknown, = %v", name, err)
		}
		return
	}
	var fresh uint64
	for _, j := range idx {
		if !h.wls[name][j] {
			h.wls[name][j] = true
			fresh++
		}
	}
	if err != nil || n != fresh {
		h.Fatalf("Add to %s = %d, %v; want %d new", name, n, err, fresh)
	}
}

func (h *watchHistory) remove() {
	h.t.Helper()
	name, idx := watchHistoryLists[h.rng.IntN(len(watchHistoryLists))], h.sample(150)
	h.Did("remove %d accounts from watchlist %s", len(idx), name)
	n, err := h.w.Remove(context.Background(), name, storetest.Batches(h.digests(idx), 50, nil))
	if h.wls[name] == nil {
		if !errors.Is(err, breachd.ErrUnknownWatchlist) {
			h.Fatalf("Remove from %s, unknown, = %v", name, err)
		}
		return
	}
	var on uint64
	for _, j := range idx {
		if h.wls[name][j] {
			delete(h.wls[name], j)
			on++
			for k := range h.x {
				if k.wl == name && k.account == j {
					delete(h.x, k)
				}
			}
		}
	}
	if err != nil || n != on {
		h.Fatalf("Remove from %s = %d, %v; want %d", name, n, err, on)
	}
}

func (h *watchHistory) deleteWatchlist() {
	h.t.Helper()
	name := watchHistoryLists[h.rng.IntN(len(watchHistoryLists))]
	h.Did("delete watchlist %s", name)
	err := h.w.Delete(context.Background(), name)
	if h.wls[name] == nil {
		if !errors.Is(err, breachd.ErrUnknownWatchlist) {
			h.Fatalf("Delete(%s), unknown, = %v", name, err)
		}
		return
	}
	if err != nil {
		h.Fatalf("Delete(%s) = %v", name, err)
	}
	delete(h.wls, name)
	for k := range h.x {
		if k.wl == name {
			delete(h.x, k)
		}
	}
}

// reconcile is the model's Reconcile: "removed" for what was reported
// of deleted imports, then "added" for the accounts that imports not yet
// diffed brought in and a watchlist holds.
func (h *watchHistory) reconcile() {
	for k := range h.x {
		if !k.seg.live {
			h.want[fmt.Sprintf("%s %s %s %d", breachd.EventExposureRemoved, k.wl, k.seg.breach, k.account)]++
			delete(h.x, k)
		}
	}
	for _, s := range h.segs {
		if s.diffed {
			continue
		}
		s.diffed = true
		if !s.live {
			continue
		}
		for _, j := range s.rows {
			for wl, on := range h.wls {
				if on[j] {
					h.x[exposureKey{wl, j, s}] = true
					h.want[fmt.Sprintf("%s %s %s %d", breachd.EventExposureAdded, wl, s.breach, j)]++
				}
			}
		}
	}
}

// check reads the events written since the last check, and compares all
// of them with the model's, and the watchlists' sizes.
func (h *watchHistory) check() {
	h.t.Helper()
	if h.got == nil {
		h.got = map[string]int{}
	}
	index := map[string]int{}
	for j, d := range h.pool {
		index[hex.EncodeToString(d[:])] = j
	}
	h.after = eachEvent(h.t, h.w, h.after, 50, func(e breachd.OutboxEvent, ev breachd.Event) {
		for _, a := range ev.Data.Accounts {
			j, ok := index[a]
			if !ok {
				h.Fatalf("event %d names an account that is not in the pool", e.Seq)
			}
			h.got[fmt.Sprintf("%s %s %s %d", ev.Type, ev.Subject, ev.Data.Breach, j)]++
		}
	})
	if !maps.Equal(h.got, h.want) {
		var extra, missing []string
		for k, n := range h.got {
			if h.want[k] != n {
				extra = append(extra, fmt.Sprintf("%s ×%d (want %d)", k, n, h.want[k]))
			}
		}
		for k, n := range h.want {
			if _, ok := h.got[k]; !ok {
				missing = append(missing, fmt.Sprintf("%s ×%d", k, n))
			}
		}
		slices.Sort(extra)
		slices.Sort(missing)
		h.Fatalf("the outbox differs from the model: %d unexpected or repeated %v; %d missing %v",
			len(extra), extra[:min(len(extra), 5)], len(missing), missing[:min(len(missing), 5)])
	}
	list, err := h.w.List(context.Background())
	if err != nil {
		h.Fatalf("List = %v", err)
	}
	var names []string
	for _, wl := range list {
		names = append(names, wl.Name)
		if wl.Accounts != int64(len(h.wls[wl.Name])) {
			h.Fatalf("watchlist %s holds %d accounts, want %d", wl.Name, wl.Accounts, len(h.wls[wl.Name]))
		}
	}
	if want := slices.Sorted(maps.Keys(h.wls)); !slices.Equal(names, want) {
		h.Fatalf("watchlists %v, want %v", names, want)
	}
}
