package service

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"

	"github.com/breachd/breachd"
)

// Pairs. A combolist is imported into two corpora: its pairs' digests
// into the pair corpus, its accounts into the email corpus, under one
// breach name. The email corpus is the truth about which breaches exist:
// a pair breach answers only while the email corpus holds a breach of that
// name, and every change keeps the two in step in an order that a crash
// between its steps cannot turn into a wrong answer:
//
//   - a pair import commits the pairs first, then the emails: cut between
//     the two, the pairs are an orphan no answer reads (no email breach of
//     that name), removed by the next import of the name;
//   - any import of a breach first removes an orphan pair breach of its
//     name, so pairs of a deleted breach never return under a new one;
//   - a delete removes the email breach first (no answer reads its pairs
//     from then on), then the pairs.
//
// lockChange serialises these steps (the corpora serialise their own
// changes, but not the pairs of steps across them).

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
// under lockChange. A pair breach whose email breach is gone is an orphan
// (see above) and is removed. A breach held with its pairs takes only
// pair imports, and one held without them only email imports: either
// mix would leave accounts whose pairs were never imported answering
// "not exposed" for any password.
func (s *Service) keepInStep(ctx context.Context, emails Store, name string, withPairs bool) error {
	pairs, err := s.pairCorpus()
	if err != nil {
		return err
	}
	hasEmails, err := has(ctx, emails, name)
	if err != nil {
		return err
	}
	hasPairs := false
	if pairs != nil {
		if hasPairs, err = has(ctx, pairs, name); err != nil {
			return err
		}
	}
	switch {
	case hasPairs && !hasEmails:
		if _, _, err := pairs.DeleteBreach(ctx, name); err != nil && !errors.Is(err, breachd.ErrNotFound) {
			return fmt.Errorf("removing the pairs an interrupted change left under %s: %w", name, err)
		}
	case hasEmails && hasPairs && !withPairs:
		return breachd.Errorf(breachd.ErrFailedPrecondition,
			"breach %s holds its accounts' passwords: add to it with 'breachd import --kind pairs' (a combolist), or import these accounts under another name", name)
	case hasEmails && !hasPairs && withPairs:
		return breachd.Errorf(breachd.ErrFailedPrecondition,
			"breach %s was imported without passwords: a combolist cannot be added to it (its other accounts would read as not exposed); delete it and import the combolist, or import it under another name", name)
	}
	return nil
}

// has reports whether st holds breach name.
func has(ctx context.Context, st Store, name string) (bool, error) {
	_, _, err := st.Breach(ctx, name)
	if errors.Is(err, breachd.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// ImportPairs adds breach b from a combolist: batches of 1 to
// breachd.MaxBatch pairs (an account's digest and its password's SHA-1).
// The pairs' digests go to the pair corpus and the accounts to the email
// corpus; the breach becomes visible, with its passwords, when both have
// committed (pairs first). An error, an empty list or ctx ending commits
// nothing that any answer reads.
func (s *Service) ImportPairs(ctx context.Context, b breachd.Breach, batches iter.Seq2[[]breachd.PairRecord, error]) (breachd.PairImportStats, error) {
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
	if err := s.keepInStep(ctx, emails, b.Name, true); err != nil {
		return breachd.PairImportStats{}, err
	}

	// One reader feeds both imports; the pairs commit first, then the
	// emails, which make the breach visible. Whichever import fails makes
	// the other abandon.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	type batch struct{ accounts, pairs []breachd.Digest }
	toPairs, toEmails := make(chan batch, 1), make(chan batch, 1)
	var readErr error // set before the channels close
	var received atomic.Uint64
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer close(toPairs)
		defer close(toEmails)
		for ps, err := range checked(batches, "pairs", "breach "+b.Name, true) {
			if err != nil {
				readErr = err
				return
			}
			bt := batch{accounts: make([]breachd.Digest, len(ps)), pairs: make([]breachd.Digest, len(ps))}
			for i := range ps {
				bt.accounts[i] = ps[i].Account
				bt.pairs[i] = breachd.PairDigest(&ps[i].Account, &ps[i].Password)
			}
			received.Add(uint64(len(ps)))
			for _, ch := range []chan batch{toPairs, toEmails} {
				select {
				case ch <- bt:
				case <-ctx.Done():
					readErr = context.Cause(ctx)
					return
				}
			}
		}
	}()
	pairsDone := make(chan error, 1)
	feed := func(ch chan batch, pick func(batch) []breachd.Digest, before func() error) iter.Seq2[[]breachd.Digest, error] {
		return func(yield func([]breachd.Digest, error) bool) {
			for bt := range ch {
				if !yield(pick(bt), nil) {
					cancel(errors.New("the other import of the pair import failed"))
					for range ch { // let the reader finish
					}
					return
				}
			}
			err := readErr
			if err == nil && ctx.Err() != nil {
				err = context.Cause(ctx)
			}
			if err == nil && before != nil {
				err = before()
			}
			if err != nil {
				yield(nil, err)
			}
		}
	}
	var wg sync.WaitGroup
	var pst breachd.ImportStats
	var pairsErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		pst, pairsErr = pairs.Import(ctx, b, feed(toPairs, func(bt batch) []breachd.Digest { return bt.pairs }, nil))
		if pairsErr != nil {
			cancel(pairsErr)
		}
		pairsDone <- pairsErr
	}()
	est, err := emails.Import(ctx, b, feed(toEmails, func(bt batch) []breachd.Digest { return bt.accounts }, func() error {
		if err := <-pairsDone; err != nil {
			return fmt.Errorf("the pairs did not commit: %w", err)
		}
		return nil
	}))
	if err != nil {
		cancel(err)
	}
	wg.Wait()
	cancel(nil) // an import that ended without draining its channel leaves the reader waiting
	<-readerDone
	// The first failure is the one to report, not the abandon it caused.
	if err != nil && readErr != nil {
		err = readErr
	} else if err != nil && pairsErr != nil {
		err = pairsErr
	}
	st := breachd.PairImportStats{Breach: b.Name, Received: received.Load(), Pairs: pst.NewAccounts + pst.KnownAccounts,
		Accounts: est.NewAccounts + est.KnownAccounts, Version: est.Version}
	return st, err
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
	held, _, err := pairs.Breaches(ctx)
	if err != nil {
		return err
	}
	var found []*breachd.CatalogEntry
	if req.HasPassword {
		pd := breachd.PairDigest(&req.Account, &req.Password)
		if found, _, err = pairs.Lookup(ctx, pd); err != nil {
			return err
		}
	}
	for i := range bs {
		name := bs[i].Name
		switch {
		case !req.HasPassword:
		case containsName(found, name):
			bs[i].Password = breachd.PasswordExposed
		case containsName(held, name):
			bs[i].Password = breachd.PasswordNotExposed
		}
	}
	return nil
}

func containsName(bs []*breachd.CatalogEntry, name string) bool {
	for _, b := range bs {
		if b.Name == name {
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
