package service

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/breachd/breachd"
)

// Pairs. A combolist is imported into two corpora, or three, under one
// breach name: its pairs' digests into the pair corpus, its accounts into
// the email corpus, and with CountPasswords its passwords' SHA-1s into the
// SHA-1 password corpus (a release, each occurrence counted).
//
// The email corpus says which breaches exist; the link says which pairs
// belong to them. A combolist's first import draws a random id
// (breachd.Breach.Pairs) that both its email breach and its pair breach
// record, and later imports of the name keep it. A pair breach answers only
// while the email breach of its name carries the same id, so pairs never
// answer for a breach they were not imported with: not when a change is cut
// between its commits on the writer, not on a read replica that has applied
// one corpus's change before the other's, not after a delete and a new
// breach of the same name. Every change also tidies:
//
//   - a pair import commits the SHA-1 release, then the pairs, then the
//     emails (so that the breach appears with its passwords); a release cut
//     before its pairs stays, and the next import adds to it (a count is the
//     highest any import of the release gave: nothing is counted twice);
//   - any import first removes pairs of its name that no email breach
//     claims (what a cut import or delete left), with their release;
//   - a delete removes the email breach, then the release, then the pairs,
//     whose presence marks the release as the combolist's.
//
// lockChange serialises these steps (the corpora serialise their own
// changes, but not the steps of one change across them).

// WithPairs serves the pair corpus from st. With st nil, the corpus is
// still opening: assessments answer breachd.ErrUnavailable until OpenPairs.
func WithPairs(st Store) Option {
	return func(s *Service) {
		s.pairs = &atomic.Pointer[Store]{}
		if st != nil {
			s.pairs.Store(&st)
		}
	}
}

// OpenPairs serves the pair corpus (declared with WithPairs) from st.
func (s *Service) OpenPairs(st Store) {
	if s.pairs != nil {
		s.pairs.Store(&st)
	}
}

// pairCorpus returns the pair corpus; nil, nil when the service has none.
func (s *Service) pairCorpus() (Store, error) {
	if s.pairs == nil {
		return nil, nil
	}
	if st := s.pairs.Load(); st != nil {
		return *st, nil
	}
	return nil, ErrOpening
}

// Decider draws a decision from an assessment's facts: sets its
// Decision, Reasons, Enforced and WouldBe (package policy).
type Decider interface {
	Decide(req *breachd.AssessRequest, a *breachd.Assessment)
}

// WithPolicy makes Assess decide with d (without one, every assessment is
// allowed, with no reasons).
func WithPolicy(d Decider) Option { return func(s *Service) { s.policy = d } }

// keepInStep prepares an import into breach name (with pairs or not),
// under lockChange, and returns the pair id its breach has or (for a first
// combolist) is given. Pairs that no email breach claims are removed. A
// breach held with its pairs takes only pair imports, and one held without
// them only email imports: either mix would leave accounts whose pairs
// were never imported answering "not exposed" for any password.
func (s *Service) keepInStep(ctx context.Context, emails Store, name string, withPairs bool) (uint64, error) {
	pairs, err := s.pairCorpus()
	if err != nil {
		return 0, err
	}
	e, err := entry(ctx, emails, name)
	if err != nil {
		return 0, err
	}
	if e == nil {
		others, _, err := otherCases(ctx, emails, name)
		if err != nil {
			return 0, err
		}
		if len(others) > 0 {
			// Two breaches whose names differ only in case would be two
			// to every reader of names (Have I Been Pwned's API finds
			// "adobe" for Adobe): the accounts belong to the one held.
			return 0, breachd.Errorf(breachd.ErrAlreadyExists,
				"breach %s: the corpus has %s, a name that differs only in case: import into %s to add these accounts to it, or choose a name of its own",
				breachd.Quote(name), breachd.Quote(others[0].Name), breachd.Quote(others[0].Name))
		}
	}
	if pairs != nil {
		p, err := entry(ctx, pairs, name)
		if err != nil {
			return 0, err
		}
		if p != nil && (e == nil || e.Pairs != p.Pairs) {
			if _, err := s.deletePasswordsOf(ctx, name); err != nil {
				return 0, fmt.Errorf("removing the passwords an interrupted change left under %s: %w", name, err)
			}
		}
	}
	switch {
	case e == nil && withPairs:
		return newPairID()
	case e == nil:
		return 0, nil
	case e.Pairs != 0 && !withPairs:
		return 0, breachd.Errorf(breachd.ErrFailedPrecondition,
			"breach %s holds its accounts' passwords: add to it with 'breachd import --kind pairs' (a combolist), or import these accounts under another name", name)
	case e.Pairs == 0 && withPairs:
		return 0, breachd.Errorf(breachd.ErrFailedPrecondition,
			"breach %s was imported without passwords: a combolist cannot be added to it (its other accounts would read as not exposed); delete it and import the combolist, or import it under another name", name)
	}
	return e.Pairs, nil
}

// newPairID draws a combolist breach's id: random, never 0.
func newPairID() (uint64, error) {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		if id := binary.BigEndian.Uint64(b[:]); id != 0 {
			return id, nil
		}
	}
}

// entry returns st's breach name, or nil.
func entry(ctx context.Context, st Store, name string) (*breachd.CatalogEntry, error) {
	e, _, err := st.Breach(ctx, name)
	if errors.Is(err, breachd.ErrNotFound) {
		return nil, nil
	}
	return e, err
}

// ImportPairs adds breach b from a combolist: batches of 1 to
// breachd.MaxBatch pairs (an account's digest and its password's SHA-1).
// The pairs' digests go to the pair corpus and the accounts to the email
// corpus; the breach becomes visible, with its passwords, when both have
// committed (pairs first). An error, an empty list or ctx ending commits
// nothing that any answer reads.
func (s *Service) ImportPairs(ctx context.Context, b breachd.Breach, batches iter.Seq2[[]breachd.PairRecord, error], opts ...PairOption) (breachd.PairImportStats, error) {
	var po pairOptions
	for _, o := range opts {
		o(&po)
	}
	if err := b.Validate(); err != nil {
		return breachd.PairImportStats{}, err
	}
	if b.PasswordsPublished != nil && !*b.PasswordsPublished {
		return breachd.PairImportStats{}, breachd.Errorf(breachd.ErrInvalidArgument,
			"breach %s: the manifest says PasswordsPublished: false, but a combolist carries its passwords: correct the manifest", b.Name)
	}
	published := true
	b.PasswordsPublished = &published
	emails, err := s.writable()
	if err != nil {
		return breachd.PairImportStats{}, err
	}
	pairs, err := s.pairCorpus()
	if err != nil {
		return breachd.PairImportStats{}, err
	}
	if pairs == nil {
		return breachd.PairImportStats{}, breachd.Errorf(breachd.ErrFailedPrecondition, "this daemon serves no pair corpus")
	}
	if err := s.lockChange(ctx, "the import of breach "+b.Name); err != nil {
		return breachd.PairImportStats{}, err
	}
	defer s.unlockChange()
	if b.Pairs, err = s.keepInStep(ctx, emails, b.Name, true); err != nil {
		return breachd.PairImportStats{}, err
	}

	// One reader feeds every import; they commit in order (the SHA-1
	// release, the pairs, then the emails, which make the breach visible),
	// each only once the one before it has. Whichever fails makes the
	// others abandon.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var pst, est breachd.ImportStats
	stages := []*pairStage{
		{run: func(ctx context.Context, feed iter.Seq2[pairBatch, error]) (err error) {
			pst, err = pairs.Import(ctx, b, mapBatches(feed, func(bt pairBatch) []breachd.Digest { return bt.pairs }))
			return err
		}},
		{run: func(ctx context.Context, feed iter.Seq2[pairBatch, error]) (err error) {
			est, err = emails.Import(ctx, b, mapBatches(feed, func(bt pairBatch) []breachd.Digest { return bt.accounts }))
			return err
		}},
	}
	if pw, err := s.passwordCorpus(breachd.SHA1); err == nil && po.countPasswords {
		// The release must be the combolist's alone: its delete goes with
		// the breach's. One of another combolist id is what an import cut
		// after the release's commit left (keepInStep has made the email
		// and pair breaches agree with b.Pairs): it goes.
		switch r, _, err := pw.Breach(ctx, b.Name); {
		case errors.Is(err, breachd.ErrNotFound):
		case err != nil:
			return breachd.PairImportStats{}, err
		case r.Pairs == 0:
			return breachd.PairImportStats{}, breachd.Errorf(breachd.ErrFailedPrecondition,
				"the SHA-1 corpus has a release named %s that is not a combolist's: import the combolist under another name, or without counting its passwords", b.Name)
		case r.Pairs != b.Pairs:
			if _, _, err := pw.DeleteBreach(ctx, b.Name); err != nil && !errors.Is(err, breachd.ErrNotFound) {
				return breachd.PairImportStats{}, fmt.Errorf("removing the release an interrupted import left under %s: %w", b.Name, err)
			}
		}
		rel := b
		rel.PasswordsPublished = nil
		stages = append([]*pairStage{{run: func(ctx context.Context, feed iter.Seq2[pairBatch, error]) error {
			_, err := pw.Import(ctx, rel, 0, mapBatches(feed, func(bt pairBatch) []breachd.PasswordRecord { return bt.passwords }))
			return err
		}}}, stages...)
	} else if po.countPasswords && errors.Is(err, breachd.ErrFailedPrecondition) {
		return breachd.PairImportStats{}, breachd.Errorf(breachd.ErrFailedPrecondition, "counting a combolist's passwords needs a SHA-1 password corpus, and this daemon serves none")
	} else if po.countPasswords {
		return breachd.PairImportStats{}, err
	}
	received, err := runStages(ctx, cancel, checked(batches, "pairs", "breach "+b.Name, true), stages)
	st := breachd.PairImportStats{Breach: b.Name, Received: received, Pairs: pst.NewAccounts + pst.KnownAccounts,
		Accounts: est.NewAccounts + est.KnownAccounts, Version: est.Version}
	return st, err
}

// PairOption configures a pair import.
type PairOption func(*pairOptions)

type pairOptions struct{ countPasswords bool }

// CountPasswords also imports the combolist's passwords into the SHA-1
// password corpus, as a release of the breach's name counting each
// occurrence, so that assessments' password counts include them. It is a
// choice, not the default: the SHA-1 corpus then holds each password's
// plain SHA-1 (unlinked to any account), and whoever copies the data
// directory can test every account against those hashes through the pair
// digests, instead of against a dictionary.
func CountPasswords() PairOption { return func(o *pairOptions) { o.countPasswords = true } }

// pairBatch is one batch of a combolist as each corpus takes it.
type pairBatch struct {
	accounts, pairs []breachd.Digest
	passwords       []breachd.PasswordRecord // each password once, counted 1
}

// pairStage is one corpus's import of a combolist: run consumes its feed
// and commits when the feed ends without an error.
type pairStage struct {
	run  func(ctx context.Context, feed iter.Seq2[pairBatch, error]) error
	ch   chan pairBatch
	done chan error
	err  error
}

// runStages feeds the batches of a combolist to every stage at once and
// lets stage i commit only after stage i-1 has committed. It returns the
// pairs received and the first failure (a read error before the
// abandons it caused).
func runStages(ctx context.Context, cancel context.CancelCauseFunc, batches iter.Seq2[[]breachd.PairRecord, error], stages []*pairStage) (uint64, error) {
	var readErr error // set before the channels close
	var received uint64
	readerDone := make(chan struct{})
	for _, st := range stages {
		st.ch, st.done = make(chan pairBatch, 1), make(chan error, 1)
	}
	go func() {
		defer close(readerDone)
		defer func() {
			for _, st := range stages {
				close(st.ch)
			}
		}()
		for ps, err := range batches {
			if err != nil {
				readErr = err
				return
			}
			bt := pairBatch{accounts: make([]breachd.Digest, len(ps)), pairs: make([]breachd.Digest, len(ps)),
				passwords: make([]breachd.PasswordRecord, len(ps))}
			for i := range ps {
				bt.accounts[i] = ps[i].Account
				bt.pairs[i] = breachd.PairDigest(&ps[i].Account, &ps[i].Password)
				bt.passwords[i].Count = 1
				copy(bt.passwords[i].Hash[:], ps[i].Password[:])
			}
			received += uint64(len(ps))
			for _, st := range stages {
				select {
				case st.ch <- bt:
				case <-ctx.Done():
					readErr = context.Cause(ctx)
					return
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for i, st := range stages {
		var before <-chan error
		if i > 0 {
			before = stages[i-1].done
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st.err = st.run(ctx, func(yield func(pairBatch, error) bool) {
				for bt := range st.ch {
					if !yield(bt, nil) {
						cancel(errors.New("another import of the combolist failed"))
						for range st.ch { // let the reader finish
						}
						return
					}
				}
				err := readErr
				if err == nil && ctx.Err() != nil {
					err = context.Cause(ctx)
				}
				if err == nil && before != nil {
					if err = <-before; err != nil {
						err = fmt.Errorf("an earlier import of the combolist did not commit: %w", err)
					}
				}
				if err != nil {
					yield(pairBatch{}, err)
				}
			})
			if st.err != nil {
				cancel(st.err)
			}
			st.done <- st.err
		}()
	}
	wg.Wait()
	cancel(nil) // an import that ended without draining its channel leaves the reader waiting
	<-readerDone
	// The first failure is the one to report, not the abandons it caused.
	err := stages[len(stages)-1].err
	if err != nil && readErr != nil {
		return received, readErr
	}
	for _, st := range stages {
		if st.err != nil && err != nil {
			return received, st.err
		}
	}
	return received, err
}

// mapBatches turns a stage's feed into what its corpus imports.
func mapBatches[T any](feed iter.Seq2[pairBatch, error], pick func(pairBatch) []T) iter.Seq2[[]T, error] {
	return func(yield func([]T, error) bool) {
		for bt, err := range feed {
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(pick(bt), nil) {
				return
			}
		}
	}
}

// Assess gathers the facts about one account (its breaches, what is known
// of its password in each, the password's prevalence) and decides with
// the service's policy.
func (s *Service) Assess(ctx context.Context, req breachd.AssessRequest) (breachd.Assessment, error) {
	emails, err := s.corpus()
	if err != nil {
		return breachd.Assessment{}, err
	}
	bs, version, err := emails.Lookup(ctx, req.Account)
	if err != nil {
		return breachd.Assessment{}, err
	}
	a := breachd.Assessment{CorpusVersion: version, Enforced: true}
	if len(bs) > 0 {
		a.Breaches = make([]breachd.BreachExposure, len(bs))
		for i, b := range bs {
			a.Breaches[i] = breachd.BreachExposure{CatalogEntry: b}
		}
		if err := s.passwordStatus(ctx, &req, a.Breaches); err != nil {
			return breachd.Assessment{}, err
		}
	}
	if req.HasPassword {
		pw, err := s.passwordCorpus(breachd.SHA1)
		if err == nil {
			var h breachd.PasswordHash
			h.Kind = breachd.SHA1
			copy(h.B[:], req.Password[:])
			var exp breachd.PasswordExposure
			if exp, err = pw.Lookup(ctx, h); err == nil {
				a.PasswordCount = exp.Count
			}
		}
		if err != nil && !errors.Is(err, breachd.ErrFailedPrecondition) {
			return breachd.Assessment{}, err
		}
	}
	if s.policy != nil {
		s.policy.Decide(&req, &a)
	}
	return a, nil
}

// passwordStatus fills in, for each of an account's breaches, what is known
// of its password there: exposed if the pair is in the breach, not exposed
// if the breach's pairs are held and it is not among them, else unknown.
func (s *Service) passwordStatus(ctx context.Context, req *breachd.AssessRequest, bs []breachd.BreachExposure) error {
	pairs, err := s.pairCorpus()
	if pairs == nil || err != nil {
		return err
	}
	if !req.HasPassword || !slices.ContainsFunc(bs, func(b breachd.BreachExposure) bool { return b.Pairs != 0 }) {
		return nil // every status stays unknown: no pair digest to hash, no lookup
	}
	held, _, err := pairs.Breaches(ctx)
	if err != nil {
		return err
	}
	found, _, err := pairs.Lookup(ctx, breachd.PairDigest(&req.Account, &req.Password))
	if err != nil {
		return err
	}
	for i := range bs {
		switch {
		case bs[i].Pairs == 0: // imported without passwords
		case linked(found, bs[i].CatalogEntry):
			bs[i].Password = breachd.PasswordExposed
		case linked(held, bs[i].CatalogEntry):
			bs[i].Password = breachd.PasswordNotExposed
		}
	}
	return nil
}

// linked reports whether pair breaches ps hold the pairs of email breach
// e: one of e's name imported with e's pair id (see above).
func linked(ps []*breachd.CatalogEntry, e *breachd.CatalogEntry) bool {
	for _, p := range ps {
		if p.Name == e.Name && p.Pairs == e.Pairs {
			return true
		}
	}
	return false
}

// lockChange takes the change token for what (e.g. "the import of breach
// X"), waiting for the change that holds it until ctx ends; the refusal
// names that change.
func (s *Service) lockChange(ctx context.Context, what string) error {
	select {
	case s.changing <- struct{}{}:
		s.running.Store(&what)
		return nil
	case <-ctx.Done():
		running := "another import or delete"
		if r := s.running.Load(); r != nil {
			running = *r
		}
		return breachd.Errorf(breachd.ErrUnavailable, "gave up waiting for %s to finish: %v", running, context.Cause(ctx))
	}
}

func (s *Service) unlockChange() { <-s.changing }

// deletePasswordsOf removes what a combolist of breach name left beside
// its accounts, once no answer reads its pairs (the email breach is gone):
// its SHA-1 release, then its pairs, whose presence marks the release as
// the combolist's (pairs.go). It reports whether there was anything.
func (s *Service) deletePasswordsOf(ctx context.Context, name string) (bool, error) {
	pairs, err := s.pairCorpus()
	if pairs == nil || err != nil {
		return false, err
	}
	p, err := entry(ctx, pairs, name)
	if p == nil || err != nil {
		return false, err
	}
	// The release is the combolist's only if it carries the pairs' id: a
	// Pwned Passwords release that happens to share the name stays.
	if pw, err := s.passwordCorpus(breachd.SHA1); err == nil {
		if rel, _, err := pw.Breach(ctx, name); err == nil && rel.Pairs == p.Pairs {
			if _, _, err := pw.DeleteBreach(ctx, name); err != nil && !errors.Is(err, breachd.ErrNotFound) {
				return false, err
			}
		} else if err != nil && !errors.Is(err, breachd.ErrNotFound) {
			return false, err
		}
	}
	if _, _, err := pairs.DeleteBreach(ctx, name); err != nil && !errors.Is(err, breachd.ErrNotFound) {
		return false, err
	}
	return true, nil
}
