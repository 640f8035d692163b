package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/store"
)

// TestPasswordBase follows a password corpus whose first release is its
// base (a file, not Badger's rows), checking every answer against a model
// of the counts rather than against another corpus (which would have a base
// too): a first release streamed in order, or out of order (the base, then
// write batches whose repeats add up); a second release that raises,
// lowers and adds counts (rows that shadow the base's); an abandoned
// release; a reopen; a replica fed a snapshot (which carries the base's
// rows, which it writes to a base of its own) and deltas, and reopened;
// the delete of the base's release (its rows go, the file
// and its record too, the hashes of the later release stay); and a release
// imported after that. Lookups and ranges read the lookup index (inline:
// over the base, then, the base's release deleted, a whole one; or a whole
// one throughout) or Badger and the base (no index).
func TestPasswordBase(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		sorted  bool
		index   store.IndexMode
		overlay bool // a base view: the index over the base
	}{
		{"in order/index", true, store.IndexInline, true},
		{"in order/whole index", true, store.IndexInline, false},
		{"in order/badger", true, store.IndexOff, false},
		{"out of order/index", false, store.IndexInline, true},
		{"out of order/badger", false, store.IndexOff, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testPasswordBase(t, tc.sorted, tc.index, tc.overlay)
		})
	}
}

func testPasswordBase(t *testing.T, sorted bool, mode store.IndexMode, overlay bool) {
	ctx := context.Background()
	k := breachd.SHA1
	dir := t.TempDir()
	o := options(0)
	o.Index = mode
	if !overlay {
		o = store.WithMaxOverlay(o, -1)
	}
	p := openPw(t, dir, k, o)
	defer func() { p.Close() }()
	// viewIs checks the index a lookup reads: over the base (rows over
	// it), or a whole one.
	viewOf := func(p *store.Passwords, when string, over bool) {
		t.Helper()
		if mode == store.IndexOff {
			return
		}
		if st := p.Stats().Index; !st.Current || (st.Overlay > 0) != over {
			t.Fatalf("%s: index %+v, want a current one, over the base: %v", when, st, over)
		}
	}
	viewIs := func(when string, over bool) { t.Helper(); viewOf(p, when, over) }
	fo := options(0)
	fo.Follower, fo.Index = true, mode
	if !overlay {
		fo = store.WithMaxOverlay(fo, -1)
	}
	folDir := t.TempDir()
	fol := openPw(t, folDir, k, fo)
	defer func() { fol.Close() }()
	ship := shipper(t, func() backupCorpus { return p }, func() applyCorpus { return fol }) // p and fol are reopened below
	baseIn := func(dir string) bool {
		_, err := os.Stat(filepath.Join(dir, "breachd.base"))
		return err == nil
	}
	hasBase := func() bool { return baseIn(dir) }

	// The first release: counts that fill a record's 3 bytes and go over.
	first := pwRecords(k, "first", 3000, 1)
	first[10].Count = 1<<24 - 1
	first[20].Count = 1<<32 + 7
	slices.SortFunc(first, func(a, b breachd.PasswordRecord) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
	in := first
	if !sorted {
		// The second half, then all of it again: its repeats add up.
		in = append(slices.Clone(first[1500:]), first...)
	}
	want := map[string]uint64{}
	firstOnly := map[string]uint64{}
	for _, r := range in {
		want[string(r.Hash[:k.Size()])] += r.Count
	}
	for h, n := range want {
		firstOnly[h] = n
	}
	if _, err := p.Import(ctx, release("first"), 0, pwBatches(in, 700, nil)); err != nil {
		t.Fatal(err)
	}
	if !hasBase() {
		t.Fatal("no base file after the first release")
	}
	wantCounts(t, p, k, want, 1)
	ship() // a snapshot: the base's rows with Badger's
	wantCounts(t, fol, k, want, 1)
	if !baseIn(folDir) {
		t.Fatal("the replica wrote no base from the snapshot")
	}

	// The second release: the first 1,000 of the first's hashes at three
	// times their counts (the rest of the first's keep theirs), 500 at a
	// count of 1 (the first's higher count answers), 500 new.
	var second []breachd.PasswordRecord
	secondOnly := map[string]uint64{}
	for i, r := range first[:1500] {
		if i >= 1000 {
			r.Count = 1
		}
		if i < 1000 {
			r.Count *= 3
		}
		second = append(second, r)
	}
	second = append(second, pwRecords(k, "second", 500, 5)...)
	for _, r := range second {
		h := string(r.Hash[:k.Size()])
		want[h] = max(want[h], r.Count)
		secondOnly[h] = r.Count
	}
	if _, err := p.Import(ctx, release("second"), 0, pwBatches(second, 400, nil)); err != nil {
		t.Fatal(err)
	}
	if got := p.Hashes(); got != uint64(len(want)) {
		t.Fatalf("Hashes() = %d after the second release, want %d", got, len(want))
	}
	viewIs("second release", overlay)
	wantCounts(t, p, k, want, 2)

	// Abandoned: it touches the base's hashes and changes no answer.
	third := append(slices.Clone(first[2000:]), pwRecords(k, "third", 300, 7)...)
	for i := range third {
		third[i].Count += 1000
	}
	stop := errors.New("the source failed")
	if _, err := p.Import(ctx, release("third"), 0, pwBatches(third, 250, stop)); !errors.Is(err, stop) {
		t.Fatalf("abandoned import: %v, want %v", err, stop)
	}
	wantCounts(t, p, k, want, 2)
	ship()
	wantCounts(t, fol, k, want, 2)
	viewOf(fol, "the replica, the second release shipped", overlay)
	if err := fol.Close(); err != nil {
		t.Fatal(err)
	}
	fol = openPw(t, folDir, k, fo) // its base again
	viewOf(fol, "the replica reopened", overlay)
	wantCounts(t, fol, k, want, 2)

	reopen := func() {
		t.Helper()
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		p = openPw(t, dir, k, o)
	}
	reopen()
	viewIs("reopened", overlay)
	wantCounts(t, p, k, want, 2)
	if mode != store.IndexOff {
		// Read-only (a disk under the reserve): no index can be written,
		// a base view needs none.
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		ro := o
		ro.Index, ro.DiskReserve = store.IndexBackground, 1<<62
		p = openPw(t, dir, k, ro)
		if p.ReadOnly() == nil {
			t.Fatal("not opened read-only")
		}
		viewIs("reopened read-only", overlay)
		wantCounts(t, p, k, want, 2)
		reopen()
	}
	if got := p.Hashes(); got != uint64(len(want)) {
		t.Fatalf("Hashes() = %d after a reopen, want %d", got, len(want))
	}

	// Deleting the base's release: the second's hashes answer its counts,
	// the first's alone answer nothing; the base goes.
	removed, v, err := p.DeleteBreach(ctx, "first")
	if err != nil || v != 3 {
		t.Fatalf("DeleteBreach = %d, %v; want version 3", v, err)
	}
	var gone uint64
	for h := range want {
		want[h] = secondOnly[h]
		if _, ok := secondOnly[h]; !ok && firstOnly[h] > 0 {
			gone++
		}
	}
	if removed != gone {
		t.Errorf("DeleteBreach removed %d hashes, want %d", removed, gone)
	}
	if hasBase() {
		t.Error("the base file is still there after its release's delete")
	}
	viewIs("the base's release deleted", false)
	wantCounts(t, p, k, want, 3)
	if got := p.Hashes(); got != uint64(len(secondOnly)) {
		t.Fatalf("Hashes() = %d after the delete, want %d", got, len(secondOnly))
	}
	ship()
	wantCounts(t, fol, k, want, 3)
	if baseIn(folDir) {
		t.Error("the replica's base file is still there after its release's delete")
	}
	reopen()
	wantCounts(t, p, k, want, 3)

	// The first release again: through write batches now.
	for h, n := range firstOnly {
		want[h] = max(secondOnly[h], n)
	}
	if _, err := p.Import(ctx, release("first"), 0, pwBatches(in, 700, nil)); err != nil {
		t.Fatal(err)
	}
	if hasBase() {
		t.Error("a later import wrote a base")
	}
	wantCounts(t, p, k, want, 4)
	ship()
	wantCounts(t, fol, k, want, 4)
}

// TestBaseDroppedUnderReaders deletes the base's release while lookups and
// ranges read Badger and the base (no index) on other goroutines: every
// answer is the count before the delete or after it, never another, and
// the base's mapping outlives its last reader (the race detector checks
// the references; an unmapped read would crash).
func TestBaseDroppedUnderReaders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k := breachd.SHA1
	o := options(0)
	o.Index = store.IndexOff
	p := openPw(t, t.TempDir(), k, o)
	defer p.Close()
	first := pwRecords(k, "first", 2000, 1)
	slices.SortFunc(first, func(a, b breachd.PasswordRecord) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
	second := pwRecords(k, "first", 500, 3) // the first 500 (unsorted) at three times
	if _, err := p.Import(ctx, release("first"), 0, pwBatches(first, 500, nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Import(ctx, release("second"), 0, pwBatches(second, 500, nil)); err != nil {
		t.Fatal(err)
	}
	before, after := map[string]uint64{}, map[string]uint64{}
	countsOf(k, before, first)
	countsOf(k, before, second) // three times: higher
	countsOf(k, after, second)
	hashes := make([]breachd.PasswordHash, 0, len(first))
	for _, r := range first {
		h, _ := breachd.PasswordHashFromBytes(k, r.Hash[:k.Size()])
		hashes = append(hashes, h)
	}
	stop := make(chan struct{})
	errs := make(chan error, 2)
	for g := range 2 {
		go func() {
			var err error
			defer func() { errs <- err }()
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				h := hashes[i%len(hashes)]
				got, lerr := p.Lookup(ctx, h)
				if b, a := before[string(h.Bytes())], after[string(h.Bytes())]; lerr != nil || got.Count != b && got.Count != a {
					err = fmt.Errorf("Lookup(%s) = %d, %v; want %d (before the delete) or %d (after)", h, got.Count, lerr, b, a)
					return
				}
				pre := store.RangeOf(h.B[:])
				if _, rerr := p.Range(ctx, pre, func(hb []byte, n uint64) {
					if b, a := before[string(hb)], after[string(hb)]; err == nil && n != b && n != a {
						err = fmt.Errorf("Range(%s) gave %X:%d; want %d or %d", pre, hb, n, b, a)
					}
				}); rerr != nil || err != nil {
					err = errors.Join(err, rerr)
					return
				}
			}
		}()
	}
	if _, _, err := p.DeleteBreach(ctx, "first"); err != nil {
		t.Fatal(err)
	}
	close(stop)
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	wantCounts(t, p, k, func() map[string]uint64 {
		m := map[string]uint64{}
		for h := range before {
			m[h] = after[h]
		}
		return m
	}(), 3)
}

// TestBaseDeletedBeforeDrop: between the delete of the base's release and
// the end of its collection, which drops the base, lookups and ranges that
// read the base (no index) answer its hashes as not exposed.
func TestBaseDeletedBeforeDrop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k := breachd.SHA1
	first := pwRecords(k, "first", 500, 1)
	slices.SortFunc(first, func(a, b breachd.PasswordRecord) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
	var p *store.Passwords
	var checked atomic.Bool
	var errs []error
	o := store.WithHook(options(0), func(point string) {
		if point != "collect-row" || !checked.CompareAndSwap(false, true) {
			return
		}
		for _, r := range first[:50] {
			h, _ := breachd.PasswordHashFromBytes(k, r.Hash[:k.Size()])
			if got, err := p.Lookup(ctx, h); err != nil || got.Count != 0 {
				errs = append(errs, fmt.Errorf("Lookup(%s) = %d, %v during the collection; want 0", h, got.Count, err))
			}
			pre := store.RangeOf(h.B[:])
			if _, err := p.Range(ctx, pre, func(hb []byte, n uint64) {
				errs = append(errs, fmt.Errorf("Range(%s) gave %X:%d during the collection; want nothing", pre, hb, n))
			}); err != nil {
				errs = append(errs, err)
			}
		}
	})
	o.Index = store.IndexOff
	p = openPw(t, t.TempDir(), k, o)
	defer p.Close()
	if _, err := p.Import(ctx, release("first"), 0, pwBatches(first, 500, nil)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.DeleteBreach(ctx, "first"); err != nil {
		t.Fatal(err)
	}
	if !checked.Load() {
		t.Fatal("the collection read no row")
	}
	for _, err := range errs {
		t.Error(err)
	}
}

// TestReplicaBaseViewThroughDelete: a replica answering from a base view
// over its own base gets, in a delta of its own, the delete of the base's
// release before the collection that follows it (the writer publishes
// between them): its view must not outlive the release, whose hashes the
// base still holds.
func TestReplicaBaseViewThroughDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k := breachd.SHA1
	first := pwRecords(k, "first", 2000, 1)
	slices.SortFunc(first, func(a, b breachd.PasswordRecord) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
	second := append(slices.Clone(first[:100]), pwRecords(k, "second", 100, 5)...)
	var ship func()
	var shipped atomic.Bool
	o := store.WithHook(options(0), func(point string) {
		if point == "collect-row" && shipped.CompareAndSwap(false, true) {
			ship() // the delete committed, its collection not yet written
		}
	})
	o.Index = store.IndexInline
	w := openPw(t, t.TempDir(), k, o)
	defer w.Close()
	ro := options(0)
	ro.Follower, ro.Index = true, store.IndexInline
	r := openPw(t, t.TempDir(), k, ro)
	defer r.Close()
	ship = shipper(t, func() backupCorpus { return w }, func() applyCorpus { return r })
	for _, rel := range []struct {
		name string
		recs []breachd.PasswordRecord
	}{{"first", first}, {"second", second}} {
		if _, err := w.Import(ctx, release(rel.name), 0, pwBatches(rel.recs, 500, nil)); err != nil {
			t.Fatal(err)
		}
	}
	ship()
	if st := r.Stats().Index; !st.Current || st.Overlay == 0 {
		t.Fatalf("the replica's index %+v, want a base view", st)
	}
	if _, _, err := w.DeleteBreach(ctx, "first"); err != nil {
		t.Fatal(err)
	}
	if !shipped.Load() {
		t.Fatal("no delta between the delete and its collection")
	}
	want := map[string]uint64{}
	for _, rec := range first {
		want[string(rec.Hash[:k.Size()])] = 0
	}
	countsOf(k, want, second)
	wantCounts(t, r, k, want, 3)
	ship()
	wantCounts(t, r, k, want, 3)
}
