package store_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// TestPasswordHistory runs a random sequence of password releases (first
// ones streamed in order into a base, or out of order; later ones over
// it; more hashes for a known release), interrupted imports, deletes and
// reopens, on a writer and on a replica fed a backup after each step, and
// checks after each step every hash's count, the ranges of its prefixes
// and the releases against a model, and every count and range read while
// a change or a backup is applied against the model at the version the
// read names: a hash answers the highest count of
// the committed imports that hold it, the counts of its repeats within
// one import added. The sequence comes from a seed drawn afresh each run
// and named in any failure; BREACHD_HISTORY_SEED=N runs seed N again.
func TestPasswordHistory(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		index   store.IndexMode
		maxBulk int
	}{{"index-background", store.IndexBackground, 0}, {"index-inline", store.IndexInline, 0},
		{"index-off", store.IndexOff, 0}, {"bulk-bounded", store.IndexBackground, 300}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := options(0)
			o.Index, o.MaxBulkDigests = tc.index, tc.maxBulk
			runPasswordHistory(t, o)
		})
	}
}

// pwHistory is the model: the pool's hashes, and the committed imports,
// each a release's name and the count it gives each hash it holds.
type pwHistory struct {
	*storetest.Steps
	t        *testing.T
	k        breachd.HashKind
	rng      *rand.Rand
	pool     []breachd.PasswordHash
	prefixes []breachd.RangePrefix
	imports  []pwImport
	version  uint64
	index    map[string]int      // a pool hash's index, by its bytes
	counts   map[uint64][]uint64 // every hash's count, by version
}

type pwImport struct {
	release string
	counts  map[int]uint64
}

func runPasswordHistory(t *testing.T, o store.Options) {
	ctx := context.Background()
	k := breachd.SHA1
	rec, rng := storetest.NewSteps(t, 0x7077686973746f72)
	h := &pwHistory{Steps: rec, t: t, k: k, rng: rng}
	// 900 hashes under 6 prefixes, so that each range holds about 150.
	for range 6 {
		h.prefixes = append(h.prefixes, breachd.RangePrefix(h.rng.IntN(1<<20)))
	}
	for i := range 900 {
		var b [breachd.MaxPasswordHashSize]byte
		for j := range b {
			b[j] = byte(h.rng.Uint32())
		}
		p := uint32(h.prefixes[i%len(h.prefixes)])
		b[0], b[1], b[2] = byte(p>>12), byte(p>>4), byte(p<<4)|b[2]&15
		ph, err := breachd.PasswordHashFromBytes(k, b[:k.Size()])
		if err != nil {
			t.Fatal(err)
		}
		h.pool = append(h.pool, ph)
	}
	wdir, rdir := filepath.Join(t.TempDir(), "writer"), filepath.Join(t.TempDir(), "replica")
	ro := o
	ro.Follower = true
	w, r := openPw(t, wdir, k, o), openPw(t, rdir, k, ro)
	defer func() { w.Close(); r.Close() }()
	var since, shipped uint64 // the last backup's end, and the version it brought the replica to
	ship := func() {
		t.Helper()
		if h.version == 0 {
			return // nothing committed to back up yet
		}
		var buf bytes.Buffer
		info, err := w.Backup(ctx, &buf, since)
		if err != nil {
			h.Fatalf("Backup = %v", err)
		}
		h.whileReading("replica", r, shipped, func() {
			if _, err := r.ApplyBackup(ctx, &buf, info.Keys); err != nil {
				h.Fatalf("ApplyBackup = %v", err)
			}
		})
		since, shipped = info.Upto, h.version
	}
	h.index = map[string]int{}
	for j, ph := range h.pool {
		h.index[string(ph.Bytes())] = j
	}
	h.snapshot()
	const steps = 24
	for h.Step = range steps {
		switch x := h.rng.IntN(100); {
		case x < 50:
			h.whileReading("writer", w, h.version, func() { h.importSome(w) })
		case x < 60:
			h.whileReading("writer", w, h.version, func() { h.interruptedImport(w) })
		case x < 85:
			h.whileReading("writer", w, h.version, func() { h.delete(w) })
		default:
			if err := errors.Join(w.Close(), r.Close()); err != nil {
				h.Fatalf("Close = %v", err)
			}
			w, r = openPw(t, wdir, k, o), openPw(t, rdir, k, ro)
			h.Did("reopen")
		}
		h.snapshot()
		ship()
		h.check("writer", w)
		h.check("replica", r)
	}
}

// snapshot records every hash's count at the model's version.
func (h *pwHistory) snapshot() {
	if h.counts == nil {
		h.counts = map[uint64][]uint64{}
	}
	at := make([]uint64, len(h.pool))
	for j := range h.pool {
		at[j] = h.count(j)
	}
	h.counts[h.version] = at
}

// whileReading runs step (a change on the writer, or a backup applied to
// the replica) while two goroutines read p, hashes one by one and whole
// ranges, and then checks that each answer is the model's at the version
// it names, from before (p's version before the step) to the model's
// after it. A range is checked whole: its hashes and their counts.
func (h *pwHistory) whileReading(who string, p *store.Passwords, before uint64, step func()) {
	h.t.Helper()
	type seen struct {
		account int // -1: a range
		prefix  breachd.RangePrefix
		version uint64
		count   uint64
		hashes  map[int]uint64
	}
	got := storetest.ReadWhile(h.Steps, step, func(r *rand.Rand, see func(seen)) error {
		if r.IntN(8) == 7 {
			pre := h.prefixes[r.IntN(len(h.prefixes))]
			s := seen{account: -1, prefix: pre, hashes: map[int]uint64{}}
			v, err := p.Range(context.Background(), pre, func(hash []byte, n uint64) {
				j, ok := h.index[string(hash)]
				if !ok {
					j = -1 - len(s.hashes) // not in the pool: never in the model's
				}
				s.hashes[j] = n
			})
			s.version = v
			see(s)
			return err
		}
		j := r.IntN(len(h.pool))
		e, err := p.Lookup(context.Background(), h.pool[j])
		see(seen{account: j, version: e.CorpusVersion, count: e.Count})
		return err
	})
	h.snapshot()
	for _, s := range got {
		at := h.counts[s.version]
		if s.version < before || s.version > h.version || at == nil {
			if s.version == 0 && s.account == -1 && len(s.hashes) == 0 {
				continue // an empty corpus's range names no version
			}
			h.Fatalf("%s: a read during the step at version %d, want %d to %d", who, s.version, before, h.version)
		}
		if s.account >= 0 {
			if s.count != at[s.account] {
				h.Fatalf("%s: during the step, hash %d counted %d at version %d, want %d", who, s.account, s.count, s.version, at[s.account])
			}
			continue
		}
		want := map[int]uint64{}
		for j, ph := range h.pool {
			if at[j] > 0 && store.RangeOf(ph.Bytes()) == s.prefix {
				want[j] = at[j]
			}
		}
		if !maps.Equal(s.hashes, want) {
			h.Fatalf("%s: during the step, Range(%s) gave %d hashes at version %d, want %d (or other counts)", who, s.prefix, len(s.hashes), s.version, len(want))
		}
	}
}

var pwHistoryReleases = []string{"PP-1", "PP-2", "PP-3", "PP-4"}

// records draws up to n records of the pool, some hashes repeated, in
// the order of the pool (a first import streams them into a base) or not.
func (h *pwHistory) records(n int) ([]breachd.PasswordRecord, map[int]uint64, bool) {
	idx := make([]int, 1+h.rng.IntN(n))
	for i := range idx {
		idx[i] = h.rng.IntN(len(h.pool))
	}
	sorted := h.rng.IntN(2) == 0
	if sorted {
		slices.SortFunc(idx, func(a, b int) int { return bytes.Compare(h.pool[a].Bytes(), h.pool[b].Bytes()) })
		idx = slices.Compact(idx)
	}
	counts := map[int]uint64{}
	rs := make([]breachd.PasswordRecord, len(idx))
	for i, j := range idx {
		copy(rs[i].Hash[:], h.pool[j].Bytes())
		rs[i].Count = 1 + uint64(h.rng.IntN(1000))
		counts[j] += rs[i].Count
	}
	return rs, counts, sorted
}

func (h *pwHistory) known(j int) bool {
	for _, im := range h.imports {
		if im.counts[j] > 0 {
			return true
		}
	}
	return false
}

func (h *pwHistory) importSome(p *store.Passwords) {
	h.t.Helper()
	name := pwHistoryReleases[h.rng.IntN(len(pwHistoryReleases))]
	rs, counts, sorted := h.records(400)
	h.Did("import %d hashes (in order %v) into %s", len(rs), sorted, name)
	st, err := p.Import(context.Background(), release(name), 0, pwBatches(rs, 1+h.rng.IntN(250), nil))
	if err != nil {
		h.Fatalf("Import = %v", err)
	}
	var fresh uint64
	for j := range counts {
		if !h.known(j) {
			fresh++
		}
	}
	h.version++
	if st.Received != uint64(len(rs)) || st.NewHashes != fresh || st.Version != h.version {
		h.Fatalf("Import stats = %+v; want %d received, %d new, version %d", st, len(rs), fresh, h.version)
	}
	h.imports = append(h.imports, pwImport{release: name, counts: counts})
}

func (h *pwHistory) interruptedImport(p *store.Passwords) {
	h.t.Helper()
	name := pwHistoryReleases[h.rng.IntN(len(pwHistoryReleases))]
	rs, _, sorted := h.records(400)
	h.Did("import %d hashes (in order %v) into %s, then a source error", len(rs), sorted, name)
	if _, err := p.Import(context.Background(), release(name), 0, pwBatches(rs, 1+h.rng.IntN(250), errors.New("the source failed"))); err == nil {
		h.Fatalf("an interrupted Import = nil, want an error")
	}
}

func (h *pwHistory) delete(p *store.Passwords) {
	h.t.Helper()
	name := pwHistoryReleases[h.rng.IntN(len(pwHistoryReleases))]
	h.Did("delete %s", name)
	removed, v, err := p.DeleteBreach(context.Background(), name)
	kept := slices.DeleteFunc(slices.Clone(h.imports), func(im pwImport) bool { return im.release == name })
	if len(kept) == len(h.imports) {
		if !errors.Is(err, breachd.ErrNotFound) {
			h.Fatalf("DeleteBreach(%s), not a release, = %v, want ErrNotFound", name, err)
		}
		return
	}
	before := 0
	for j := range h.pool {
		if h.known(j) {
			before++
		}
	}
	h.imports = kept
	after := 0
	for j := range h.pool {
		if h.known(j) {
			after++
		}
	}
	h.version++
	if err != nil || removed != uint64(before-after) || v != h.version {
		h.Fatalf("DeleteBreach(%s) = %d, %d, %v; want %d removed at version %d", name, removed, v, err, before-after, h.version)
	}
}

// count is the model's answer for hash j.
func (h *pwHistory) count(j int) uint64 {
	var n uint64
	for _, im := range h.imports {
		n = max(n, im.counts[j])
	}
	return n
}

func (h *pwHistory) check(who string, p *store.Passwords) {
	h.t.Helper()
	ctx := context.Background()
	want := map[string]uint64{}
	for j, ph := range h.pool {
		n := h.count(j)
		if n > 0 {
			want[string(ph.Bytes())] = n
		}
		got, err := p.Lookup(ctx, ph)
		if err != nil || got.Count != n || got.CorpusVersion != h.version {
			h.Fatalf("%s: Lookup(hash %d) = %+v, %v; want count %d at version %d", who, j, got, err, n, h.version)
		}
	}
	for _, pre := range h.prefixes {
		var got []string
		v, err := p.Range(ctx, pre, func(hash []byte, n uint64) {
			if want[string(hash)] != n {
				h.Fatalf("%s: Range(%s) gave %X:%d, want count %d", who, pre, hash, n, want[string(hash)])
			}
			got = append(got, string(hash))
		})
		if err != nil || (v != h.version && h.version > 0) {
			h.Fatalf("%s: Range(%s) = version %d, %v; want version %d", who, pre, v, err, h.version)
		}
		var exp []string
		for hs := range want {
			if store.RangeOf([]byte(hs)) == pre {
				exp = append(exp, hs)
			}
		}
		slices.Sort(exp)
		if !slices.Equal(got, exp) {
			h.Fatalf("%s: Range(%s) gave %d hashes, want %d (in order)", who, pre, len(got), len(exp))
		}
	}
	rels := map[string]map[int]bool{}
	for _, im := range h.imports {
		if rels[im.release] == nil {
			rels[im.release] = map[int]bool{}
		}
		for j := range im.counts {
			rels[im.release][j] = true
		}
	}
	var names []string
	for _, r := range p.Releases() {
		names = append(names, r.Name)
		if r.Hashes != uint64(len(rels[r.Name])) {
			h.Fatalf("%s: release %s carries %d hashes, want %d", who, r.Name, r.Hashes, len(rels[r.Name]))
		}
	}
	if wantNames := slices.Sorted(maps.Keys(rels)); !slices.Equal(names, wantNames) {
		h.Fatalf("%s: releases %v, want %v", who, names, wantNames)
	}
}
