package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/breachd/breachd"
)

// History runs a random sequence of imports (new breaches and more
// accounts for known ones), interrupted imports, deletes, corrections and
// reopens over a small pool of accounts, and after each step checks every
// account, the catalogue and the version against a model. The sequence
// comes from a seed, drawn afresh each run and named in any failure;
// BREACHD_HISTORY_SEED=N runs seed N again (Steps).
//
// Each change runs while two goroutines look accounts up, whose every
// answer must be the model's at the version it names, the one before the
// change or after it. It runs in make test's no-race job: the race
// detector checks the same paths through Run's concurrent invariants.
func History(t *testing.T, open Opener, o HistoryOptions) {
	rec, rng := NewSteps(t, 0x6272656163686400)
	h := &history{Steps: rec, o: o, t: t, rng: rng, pool: Digests("history", 2000), in: map[int]map[string]bool{}, breaches: map[string]*modelBreach{}}
	dir := t.TempDir()
	b := open(t, dir)
	defer func() { b.Close() }()
	h.snapshot()
	const steps = 40
	for h.Step = range steps {
		switch r := h.rng.IntN(100); {
		case r < 45:
			h.whileReading(b, h.importSome)
		case r < 55:
			h.whileReading(b, h.interruptedImport)
		case r < 72:
			h.whileReading(b, h.delete)
		case r < 85:
			h.whileReading(b, h.update)
		default:
			if err := b.Close(); err != nil {
				h.Fatalf("Close = %v", err)
			}
			b = open(t, dir)
			h.Did("reopen")
		}
		h.check(b)
	}
}

// snapshot records what every account of the pool answers at the model's
// version: its breaches' names and titles.
func (h *history) snapshot() {
	if h.answers == nil {
		h.answers = map[uint64][]string{}
	}
	at := make([]string, len(h.pool))
	for j := range h.pool {
		for _, name := range slices.Sorted(maps.Keys(h.in[j])) {
			at[j] += name + ": " + h.breaches[name].title + "; "
		}
	}
	h.answers[h.version] = at
}

// answer renders an answer as snapshot does.
func answer(bs []*breachd.CatalogEntry) string {
	var s string
	for _, b := range bs {
		s += b.Name + ": " + b.Title + "; "
	}
	return s
}

// whileReading runs a step while two goroutines look accounts up, one by
// one and in batches, and then checks that each answer is the one the
// model gives at the version it names, and that version is the one before
// the step or after it.
func (h *history) whileReading(b Backend, step func(Backend)) {
	h.t.Helper()
	type seen struct {
		account int
		version uint64
		answer  string
	}
	before := h.version
	got := ReadWhile(h.Steps, func() { step(b) }, func(r *rand.Rand, see func(seen)) error {
		if r.IntN(8) == 7 { // a batch of 64 accounts in a row
			from := r.IntN(len(h.pool) - 64)
			packed := make([]byte, 0, 64*breachd.DigestSize)
			for _, d := range h.pool[from : from+64] {
				packed = append(packed, d[:]...)
			}
			hits := map[int]string{}
			v, err := b.LookupBatch(context.Background(), packed, func(i int, bs []*breachd.CatalogEntry) { hits[from+i] = answer(bs) })
			if err != nil {
				return err
			}
			for j := from; j < from+64; j++ {
				see(seen{j, v, hits[j]})
			}
			return nil
		}
		j := r.IntN(len(h.pool))
		bs, v, err := b.Lookup(context.Background(), h.pool[j])
		if err != nil {
			return err
		}
		see(seen{j, v, answer(bs)})
		return nil
	})
	h.snapshot()
	for _, s := range got {
		if s.version < before || s.version > h.version {
			h.Fatalf("an answer during the step at version %d, want %d to %d", s.version, before, h.version)
		}
		if want := h.answers[s.version][s.account]; s.answer != want {
			h.Fatalf("during the step, account %d answered %q at version %d, want %q", s.account, s.answer, s.version, want)
		}
	}
}

// HistoryOptions tune History for a backend.
type HistoryOptions struct {
	// Checked is how many accounts are checked after each step: 0 for
	// every account of the pool (2,000) in batches and 40 one by one, or
	// a batch of 64 and the rest one by one, for a backend whose lookups
	// are costly (a private check's are two group operations).
	Checked int
}

// history is the model of a corpus: which accounts (indices into pool) are
// in which breaches, each breach's title, and the version.
type history struct {
	*Steps
	o        HistoryOptions
	t        *testing.T
	rng      *rand.Rand
	pool     []breachd.Digest
	in       map[int]map[string]bool
	breaches map[string]*modelBreach
	version  uint64
	answers  map[uint64][]string // what each account answers, by version
}

type modelBreach struct {
	title    string
	accounts int
}

var historyNames = []string{"Alpha", "Beta", "Gamma", "Delta", "Epsilon"}

// sample picks up to n accounts of the pool, some of them twice.
func (h *history) sample(n int) []int {
	out := make([]int, 1+h.rng.IntN(n))
	for i := range out {
		if i > 0 && h.rng.IntN(20) == 0 {
			out[i] = out[h.rng.IntN(i)]
		} else {
			out[i] = h.rng.IntN(len(h.pool))
		}
	}
	return out
}

func (h *history) record(name string) breachd.Breach {
	r := Breach(name)
	if m := h.breaches[name]; m != nil {
		r.Title = m.title
	}
	return r
}

func (h *history) digests(idx []int) []breachd.Digest {
	out := make([]breachd.Digest, len(idx))
	for i, j := range idx {
		out[i] = h.pool[j]
	}
	return out
}

func (h *history) importSome(b Backend) {
	h.t.Helper()
	name := historyNames[h.rng.IntN(len(historyNames))]
	idx := h.sample(800)
	h.Did("import %d accounts into %s", len(idx), name)
	st, err := b.Import(context.Background(), h.record(name), Batches(h.digests(idx), 1+h.rng.IntN(300), nil))
	if err != nil {
		h.Fatalf("Import = %v", err)
	}
	var fresh, known int
	seen := map[int]bool{}
	for _, j := range idx {
		if seen[j] {
			continue
		}
		seen[j] = true
		switch {
		case len(h.in[j]) == 0:
			fresh++
		case !h.in[j][name]:
			known++
		}
	}
	h.version++
	want := breachd.ImportStats{Breach: name, Received: uint64(len(idx)), NewAccounts: uint64(fresh), KnownAccounts: uint64(known),
		Duplicates: uint64(len(idx) - fresh - known), Version: h.version}
	if st != want {
		h.Fatalf("Import stats = %+v, want %+v", st, want)
	}
	m := h.breaches[name]
	if m == nil {
		m = &modelBreach{title: Breach(name).Title}
		h.breaches[name] = m
	}
	for j := range seen {
		if h.in[j] == nil {
			h.in[j] = map[string]bool{}
		}
		if !h.in[j][name] {
			h.in[j][name] = true
			m.accounts++
		}
	}
}

func (h *history) interruptedImport(b Backend) {
	h.t.Helper()
	name := historyNames[h.rng.IntN(len(historyNames))]
	idx := h.sample(800)
	ds := h.digests(idx)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var err error
	if h.rng.IntN(2) == 0 {
		h.Did("import %d accounts into %s, then a source error", len(idx), name)
		_, err = b.Import(ctx, h.record(name), Batches(ds, 1+h.rng.IntN(300), errors.New("the source failed")))
	} else {
		h.Did("import %d accounts into %s, cancelled", len(idx), name)
		_, err = b.Import(ctx, h.record(name), func(yield func([]breachd.Digest, error) bool) {
			if yield(ds[:len(ds)/2], nil) {
				cancel()
				yield(ds[len(ds)/2:], nil)
			}
		})
	}
	if err == nil {
		h.Fatalf("an interrupted Import = nil, want an error")
	}
}

func (h *history) delete(b Backend) {
	h.t.Helper()
	name := historyNames[h.rng.IntN(len(historyNames))]
	h.Did("delete %s", name)
	removed, v, err := b.DeleteBreach(context.Background(), name)
	if h.breaches[name] == nil {
		if !errors.Is(err, breachd.ErrNotFound) {
			h.Fatalf("DeleteBreach(%s), not in the catalogue, = %v, want ErrNotFound", name, err)
		}
		return
	}
	var only uint64
	for _, bs := range h.in {
		if bs[name] {
			delete(bs, name)
			if len(bs) == 0 {
				only++
			}
		}
	}
	delete(h.breaches, name)
	h.version++
	if err != nil || removed != only || v != h.version {
		h.Fatalf("DeleteBreach(%s) = %d, %d, %v; want %d removed at version %d", name, removed, v, err, only, h.version)
	}
}

func (h *history) update(b Backend) {
	h.t.Helper()
	name := historyNames[h.rng.IntN(len(historyNames))]
	r := h.record(name)
	r.Title = fmt.Sprintf("%s, corrected at step %d", name, h.Step)
	h.Did("correct %s", name)
	e, v, err := b.UpdateBreach(context.Background(), r)
	m := h.breaches[name]
	if m == nil {
		if !errors.Is(err, breachd.ErrNotFound) {
			h.Fatalf("UpdateBreach(%s), not in the catalogue, = %v, want ErrNotFound", name, err)
		}
		return
	}
	m.title = r.Title
	h.version++
	if err != nil || e.Title != r.Title || e.AccountCount != int64(m.accounts) || v != h.version {
		h.Fatalf("UpdateBreach(%s) = %+v, %d, %v; want its new title, %d accounts, version %d", name, e, v, err, m.accounts, h.version)
	}
}

// check asks for every account of the pool in one batch and a sample one
// by one, and for the catalogue, and compares each answer with the model.
func (h *history) check(b Backend) {
	h.t.Helper()
	want := func(j int) []string { return slices.Sorted(maps.Keys(h.in[j])) }
	list, v, err := b.Breaches(context.Background())
	if err != nil || v != h.version {
		h.Fatalf("Breaches = version %d, %v; want version %d", v, err, h.version)
	}
	var got []string
	for _, e := range list {
		got = append(got, e.Name)
		m := h.breaches[e.Name]
		if m == nil || e.Title != m.title || e.AccountCount != int64(m.accounts) {
			h.Fatalf("catalogue entry %s: %q, %d accounts; want %+v", e.Name, e.Title, e.AccountCount, m)
		}
	}
	if wantNames := slices.Sorted(maps.Keys(h.breaches)); !slices.Equal(got, wantNames) {
		h.Fatalf("catalogue = %v, want %v", got, wantNames)
	}
	batched, single := len(h.pool), 40
	if h.o.Checked > 0 { // a batch of 64 from a random account, and the rest one by one
		batched, single = 64, max(0, h.o.Checked-64)
	}
	from := h.rng.IntN(len(h.pool) - batched + 1)
	for c := from; c < from+batched; c += breachd.MaxBatch {
		end := min(c+breachd.MaxBatch, from+batched)
		packed := make([]byte, 0, (end-c)*breachd.DigestSize)
		for _, d := range h.pool[c:end] {
			packed = append(packed, d[:]...)
		}
		next := c
		v, err := b.LookupBatch(context.Background(), packed, func(i int, bs []*breachd.CatalogEntry) {
			for ; next < c+i; next++ {
				if len(h.in[next]) > 0 {
					h.Fatalf("LookupBatch: account %d not exposed, want %v", next, want(next))
				}
			}
			if got := names(bs); !slices.Equal(got, want(c+i)) {
				h.Fatalf("LookupBatch: account %d in %v, want %v", c+i, got, want(c+i))
			}
			next = c + i + 1
		})
		if err != nil || v != h.version {
			h.Fatalf("LookupBatch = version %d, %v; want version %d", v, err, h.version)
		}
		for ; next < end; next++ {
			if len(h.in[next]) > 0 {
				h.Fatalf("LookupBatch: account %d not exposed, want %v", next, want(next))
			}
		}
	}
	for range single {
		j := h.rng.IntN(len(h.pool))
		bs, v, err := b.Lookup(context.Background(), h.pool[j])
		if err != nil || v != h.version || !slices.Equal(names(bs), want(j)) {
			h.Fatalf("Lookup(account %d) = %v at version %d, %v; want %v at version %d", j, names(bs), v, err, want(j), h.version)
		}
	}
}
