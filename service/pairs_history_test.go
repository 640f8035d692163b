package service_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/service"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// TestPairHistory runs a random sequence of the changes that span the
// email, pair and SHA-1 corpora (combolists, with their passwords counted
// or not; breaches of accounts only; deletes, corrections, imports that
// fail, reopens) and after each one assesses accounts with passwords
// against a model: a breach imported with its passwords says whether the
// account's password is among its pairs, any other says nothing, and a
// password's count is the highest any counted import of a live combolist
// gave it. Each change runs while two goroutines assess accounts, whose
// every part must be the model's before the change or after it. The
// sequence comes from a seed drawn afresh each run and named in any
// failure; BREACHD_HISTORY_SEED=N runs seed N again.
func TestPairHistory(t *testing.T) {
	t.Parallel()
	steps, rng := storetest.NewSteps(t, 0x7061697273)
	h := &pairHistory{Steps: steps, t: t, rng: rng, accounts: storetest.Digests("pair-history", 300), breaches: map[string]*pairBreach{}}
	dir := t.TempDir()
	h.open(dir)
	defer h.close()
	for h.Step = range 40 {
		switch x := h.rng.IntN(100); {
		case x < 35:
			h.whileAssessing(h.importPairs)
		case x < 50:
			h.whileAssessing(h.importAccounts)
		case x < 60:
			h.whileAssessing(h.failedImport)
		case x < 78:
			h.whileAssessing(h.delete)
		case x < 88:
			h.whileAssessing(h.update)
		default:
			h.close()
			h.open(dir)
			h.Did("reopen")
		}
		h.check()
	}
}

// pairHistory is the model: each breach's accounts, whether it holds their
// passwords and which pairs (account, password index), and the counts its
// counted imports gave each password.
type pairHistory struct {
	*storetest.Steps
	t        *testing.T
	rng      *rand.Rand
	accounts []breachd.Digest
	breaches map[string]*pairBreach
	svc      *service.Service
	closers  []func() error
}

type pairBreach struct {
	combolist bool
	title     string
	accounts  map[int]bool
	pairs     map[[2]int]bool
	counts    map[int]uint64 // nil: no counted import
}

var pairHistoryNames = []string{"Combo", "Sega", "Stealer", "Mix"}

const pairHistoryPasswords = 25

func (h *pairHistory) open(dir string) {
	h.t.Helper()
	o := store.DefaultOptions()
	o.ExpectedKeys, o.MemTableSize = 1024, 4<<20
	ctx := context.Background()
	emails, err := store.Open(ctx, store.EmailDir(dir), o)
	if err != nil {
		h.Fatalf("%v", err)
	}
	pairs, err := store.OpenPairs(ctx, store.PairDir(dir), o)
	if err != nil {
		h.Fatalf("%v", err)
	}
	pw, err := store.OpenPasswords(ctx, store.PasswordDir(dir, breachd.SHA1), breachd.SHA1, o)
	if err != nil {
		h.Fatalf("%v", err)
	}
	h.closers = []func() error{emails.Close, pairs.Close, pw.Close}
	h.svc = service.New(emails, service.WithPairs(pairs), service.WithPasswords(breachd.SHA1, pw))
}

func (h *pairHistory) close() {
	var errs []error
	for _, c := range h.closers {
		errs = append(errs, c())
	}
	h.closers = nil
	if err := errors.Join(errs...); err != nil {
		h.Fatalf("Close = %v", err)
	}
}

func (h *pairHistory) name() string { return pairHistoryNames[h.rng.IntN(len(pairHistoryNames))] }

func (h *pairHistory) record(name string) breachd.Breach {
	b := breachd.Breach{Name: name, Title: name}
	if m := h.breaches[name]; m != nil {
		b.Title = m.title
	}
	return b
}

// pairList draws up to 120 pairs of the pool (an account may come twice,
// with another password or the same one).
func (h *pairHistory) pairList() [][2]int {
	out := make([][2]int, 1+h.rng.IntN(120))
	for i := range out {
		out[i] = [2]int{h.rng.IntN(len(h.accounts)), h.rng.IntN(pairHistoryPasswords)}
	}
	return out
}

func (h *pairHistory) records(ps [][2]int) []breachd.PairRecord {
	out := make([]breachd.PairRecord, len(ps))
	for i, p := range ps {
		out[i] = breachd.PairRecord{Account: h.accounts[p[0]], Password: pwSHA1(p[1])}
	}
	return out
}

func pairBatches(rs []breachd.PairRecord, end error) func(func([]breachd.PairRecord, error) bool) {
	return func(yield func([]breachd.PairRecord, error) bool) {
		for c := range slices.Chunk(rs, 16) {
			if !yield(c, nil) {
				return
			}
		}
		if end != nil {
			yield(nil, end)
		}
	}
}

func (h *pairHistory) importPairs() {
	h.t.Helper()
	name, ps, counted := h.name(), h.pairList(), h.rng.IntN(2) == 0
	h.Did("combolist of %d pairs into %s (passwords counted %v)", len(ps), name, counted)
	var opts []service.PairOption
	if counted {
		opts = append(opts, service.CountPasswords())
	}
	_, err := h.svc.ImportPairs(context.Background(), h.record(name), pairBatches(h.records(ps), nil), opts...)
	m := h.breaches[name]
	if m != nil && !m.combolist {
		if !errors.Is(err, breachd.ErrFailedPrecondition) {
			h.Fatalf("a combolist into %s, a breach of accounts only: %v, want FAILED_PRECONDITION", name, err)
		}
		return
	}
	if err != nil {
		h.Fatalf("ImportPairs = %v", err)
	}
	if m == nil {
		m = &pairBreach{combolist: true, title: name, accounts: map[int]bool{}, pairs: map[[2]int]bool{}}
		h.breaches[name] = m
	}
	occurrences := map[int]uint64{}
	for _, p := range ps {
		m.accounts[p[0]], m.pairs[p] = true, true
		occurrences[p[1]]++
	}
	if counted {
		if m.counts == nil {
			m.counts = map[int]uint64{}
		}
		for pw, n := range occurrences {
			m.counts[pw] = max(m.counts[pw], n)
		}
	}
}

func (h *pairHistory) importAccounts() {
	h.t.Helper()
	name := h.name()
	idx := make([]int, 1+h.rng.IntN(120))
	ds := make([]breachd.Digest, len(idx))
	for i := range idx {
		idx[i] = h.rng.IntN(len(h.accounts))
		ds[i] = h.accounts[idx[i]]
	}
	h.Did("%d accounts into %s", len(idx), name)
	_, err := h.svc.Import(context.Background(), h.record(name), storetest.Batches(ds, 16, nil))
	m := h.breaches[name]
	if m != nil && m.combolist {
		if !errors.Is(err, breachd.ErrFailedPrecondition) {
			h.Fatalf("accounts only into %s, a combolist: %v, want FAILED_PRECONDITION", name, err)
		}
		return
	}
	if err != nil {
		h.Fatalf("Import = %v", err)
	}
	if m == nil {
		m = &pairBreach{title: name, accounts: map[int]bool{}}
		h.breaches[name] = m
	}
	for _, j := range idx {
		m.accounts[j] = true
	}
}

func (h *pairHistory) failedImport() {
	h.t.Helper()
	name, ps := h.name(), h.pairList()
	h.Did("combolist of %d pairs into %s, then a read error", len(ps), name)
	if _, err := h.svc.ImportPairs(context.Background(), h.record(name), pairBatches(h.records(ps), errors.New("the dump is truncated")),
		service.CountPasswords()); err == nil {
		h.Fatalf("a combolist whose reader failed: ImportPairs = nil, want an error")
	}
}

func (h *pairHistory) delete() {
	h.t.Helper()
	name := h.name()
	h.Did("delete %s", name)
	_, _, err := h.svc.DeleteBreach(context.Background(), name)
	if h.breaches[name] == nil {
		if !errors.Is(err, breachd.ErrNotFound) {
			h.Fatalf("DeleteBreach(%s), unknown, = %v, want NOT_FOUND", name, err)
		}
		return
	}
	if err != nil {
		h.Fatalf("DeleteBreach(%s) = %v", name, err)
	}
	delete(h.breaches, name)
}

func (h *pairHistory) update() {
	h.t.Helper()
	name := h.name()
	b := h.record(name)
	b.Title = fmt.Sprintf("%s, corrected at step %d", name, h.Step)
	h.Did("correct %s", name)
	_, _, err := h.svc.UpdateBreach(context.Background(), b)
	m := h.breaches[name]
	if m == nil {
		if !errors.Is(err, breachd.ErrNotFound) {
			h.Fatalf("UpdateBreach(%s), unknown, = %v, want NOT_FOUND", name, err)
		}
		return
	}
	if err != nil {
		h.Fatalf("UpdateBreach(%s) = %v", name, err)
	}
	m.title = b.Title
}

// expect is what an assessment of account j, with password pw if asked,
// says under breaches: each breach's password status, and the count.
func expect(breaches map[string]*pairBreach, j, pw int, asked bool) (map[string]string, uint64) {
	want := map[string]string{}
	var count uint64
	for name, m := range breaches {
		if asked {
			count = max(count, m.counts[pw])
		}
		if !m.accounts[j] {
			continue
		}
		switch {
		case !asked || !m.combolist:
			want[name] = breachd.PasswordUnknown.String()
		case m.pairs[[2]int{j, pw}]:
			want[name] = breachd.PasswordExposed.String()
		default:
			want[name] = breachd.PasswordNotExposed.String()
		}
	}
	return want, count
}

func (h *pairHistory) assess(j, pw int, asked bool) (map[string]string, *breachd.Assessment, error) {
	req := breachd.AssessRequest{Account: h.accounts[j], HasPassword: asked}
	if asked {
		req.Password = pwSHA1(pw)
	}
	a, err := h.svc.Assess(context.Background(), req)
	got := map[string]string{}
	for _, b := range a.Breaches {
		got[b.Name] = b.Password.String()
	}
	return got, &a, err
}

// whileAssessing runs a step while two goroutines assess accounts, and
// then checks each assessment against the model before the step and
// after it. A change spans corpora that commit one after another, so
// the parts of one answer may differ in which they show: its breaches
// are one or the other's (the email corpus commits at once), each
// breach's status is one or the other's, and so is the count.
func (h *pairHistory) whileAssessing(step func()) {
	h.t.Helper()
	before := map[string]*pairBreach{}
	for name, m := range h.breaches {
		c := *m
		c.accounts, c.pairs, c.counts = maps.Clone(m.accounts), maps.Clone(m.pairs), maps.Clone(m.counts)
		before[name] = &c
	}
	type seen struct {
		j, pw int
		asked bool
		got   map[string]string
		count uint64
	}
	got := storetest.ReadWhile(h.Steps, step, func(r *rand.Rand, see func(seen)) error {
		s := seen{j: r.IntN(len(h.accounts)), pw: r.IntN(pairHistoryPasswords), asked: r.IntN(8) != 0}
		m, a, err := h.assess(s.j, s.pw, s.asked)
		s.got, s.count = m, a.PasswordCount
		see(s)
		return err
	})
	for _, s := range got {
		wantBefore, countBefore := expect(before, s.j, s.pw, s.asked)
		wantAfter, countAfter := expect(h.breaches, s.j, s.pw, s.asked)
		names := slices.Sorted(maps.Keys(s.got))
		ok := slices.Equal(names, slices.Sorted(maps.Keys(wantBefore))) || slices.Equal(names, slices.Sorted(maps.Keys(wantAfter)))
		for name, st := range s.got {
			ok = ok && (st == wantBefore[name] || st == wantAfter[name])
		}
		if !ok || (s.count != countBefore && s.count != countAfter) {
			h.Fatalf("during the step, account %d with password %d (asked %v): %v, count %d; want %v, count %d, or %v, count %d",
				s.j, s.pw, s.asked, s.got, s.count, wantBefore, countBefore, wantAfter, countAfter)
		}
	}
}

// check assesses 120 accounts, most with a password, against the model.
func (h *pairHistory) check() {
	h.t.Helper()
	for range 120 {
		j, pw, asked := h.rng.IntN(len(h.accounts)), h.rng.IntN(pairHistoryPasswords), h.rng.IntN(8) != 0
		got, a, err := h.assess(j, pw, asked)
		if err != nil {
			h.Fatalf("Assess = %v", err)
		}
		for _, b := range a.Breaches {
			if m := h.breaches[b.Name]; m != nil && b.Title != m.title {
				h.Fatalf("account %d: breach %s titled %q, want %q", j, b.Name, b.Title, m.title)
			}
		}
		want, count := expect(h.breaches, j, pw, asked)
		if !maps.Equal(got, want) || a.PasswordCount != count {
			h.Fatalf("account %d with password %d (asked %v): %v, count %d; want %v, count %d", j, pw, asked, got, a.PasswordCount, want, count)
		}
	}
}
