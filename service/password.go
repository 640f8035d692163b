package service

import (
	"context"
	"errors"
	"iter"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/breachd/breachd"
)

// PasswordCorpus is what the password use cases need from the corpus of
// one hash kind.
type PasswordCorpus interface {
	// Lookup returns the count of h (0 when it is not in the corpus).
	Lookup(ctx context.Context, h breachd.PasswordHash) (breachd.PasswordExposure, error)
	// Range calls fn in ascending order for every hash with count > 0
	// whose first 20 bits are prefix; fn's slice is valid during the call.
	Range(ctx context.Context, prefix breachd.RangePrefix, fn func(hash []byte, count uint64)) (uint64, error)
	// Import stores a release's records and commits them, all visible at
	// once, when batches ends without an error; otherwise nothing changes.
	Import(ctx context.Context, rel breachd.Breach, expected uint64, batches iter.Seq2[[]breachd.PasswordRecord, error]) (breachd.PasswordImportStats, error)
	// Breaches lists the releases and Breach returns one; DeleteBreach
	// removes one from every answer at once.
	Breaches(ctx context.Context) ([]*breachd.CatalogEntry, uint64, error)
	Breach(ctx context.Context, name string) (*breachd.CatalogEntry, uint64, error)
	UpdateBreach(ctx context.Context, b breachd.Breach) (*breachd.CatalogEntry, uint64, error)
	DeleteBreach(ctx context.Context, name string) (removed, version uint64, err error)
}

// Option configures a Service.
type Option func(*Service)

// WithPasswords serves the password corpus of kind k from c. With c nil,
// the corpus is still opening: its calls answer breachd.ErrUnavailable
// until OpenPasswords.
func WithPasswords(k breachd.HashKind, c PasswordCorpus) Option {
	return func(s *Service) {
		p := &atomic.Pointer[PasswordCorpus]{}
		if c != nil {
			p.Store(&c)
		}
		s.passwords[k] = p
	}
}

// OpenPasswords serves the password corpus of kind k (declared with
// WithPasswords) from c from now on.
func (s *Service) OpenPasswords(k breachd.HashKind, c PasswordCorpus) {
	if p := s.passwords[k]; p != nil {
		p.Store(&c)
	}
}

func (s *Service) passwordCorpus(k breachd.HashKind) (PasswordCorpus, error) {
	if k.Size() == 0 {
		return nil, breachd.Errorf(breachd.ErrInvalidArgument, "hash kind %d: want SHA-1 or NTLM", k)
	}
	p := s.passwords[k]
	if p == nil {
		return nil, breachd.Errorf(breachd.ErrFailedPrecondition, "this daemon serves no %s password corpus", k)
	}
	if c := p.Load(); c != nil {
		return *c, nil
	}
	return nil, ErrOpening
}

// DeleteRelease removes release name of the password corpus of kind k from
// every answer at once (an older Pwned Passwords download, once a newer one
// is in): hashes no other release holds are deleted, the others answer the
// highest count left. It returns how many went, and the corpus's new
// version. A combolist's release is refused: it goes with its breach
// (DeleteBreach), whose pairs still count its passwords.
func (s *Service) DeleteRelease(ctx context.Context, k breachd.HashKind, name string) (removed, version uint64, err error) {
	if err := validName(name, "release"); err != nil {
		return 0, 0, err
	}
	c, err := s.writablePasswords(k)
	if err != nil {
		return 0, 0, err
	}
	if err := s.lockChange(ctx, "the delete of "+k.String()+" release "+name); err != nil {
		return 0, 0, err
	}
	defer s.unlockChange()
	rel, _, err := c.Breach(ctx, name)
	if errors.Is(err, breachd.ErrNotFound) {
		return 0, 0, noRelease(k, name)
	}
	if err != nil {
		return 0, 0, err
	}
	if rel.Pairs != 0 {
		return 0, 0, breachd.Errorf(breachd.ErrFailedPrecondition,
			"release %s holds the passwords of the combolist of breach %s: delete the breach, and its passwords go with it", breachd.Quote(name), breachd.Quote(name))
	}
	return c.DeleteBreach(ctx, name)
}

// UpdateRelease corrects the catalogue entry of a release of the password
// corpus of kind k: every field but its hashes.
func (s *Service) UpdateRelease(ctx context.Context, k breachd.HashKind, b breachd.Breach) (*breachd.CatalogEntry, uint64, error) {
	if err := b.Validate(); err != nil {
		return nil, 0, err
	}
	c, err := s.writablePasswords(k)
	if err != nil {
		return nil, 0, err
	}
	e, version, err := c.UpdateBreach(ctx, b)
	if errors.Is(err, breachd.ErrNotFound) {
		return nil, version, noRelease(k, b.Name)
	}
	return e, version, err
}

// writablePasswords returns the password corpus of kind k for a change:
// refused on a replica.
func (s *Service) writablePasswords(k breachd.HashKind) (PasswordCorpus, error) {
	c, err := s.passwordCorpus(k)
	if err != nil {
		return nil, err
	}
	if s.readOnly != nil {
		return nil, s.readOnly()
	}
	return c, nil
}

func noRelease(k breachd.HashKind, name string) error {
	return breachd.Errorf(breachd.ErrNotFound, "the %s password corpus has no release %s", k, breachd.Quote(name))
}

// CheckPassword returns how often the password whose hash is h appears in
// the corpus of h's kind (0: never), with that corpus's version.
func (s *Service) CheckPassword(ctx context.Context, h breachd.PasswordHash) (breachd.PasswordExposure, error) {
	c, err := s.passwordCorpus(h.Kind)
	if err != nil {
		return breachd.PasswordExposure{}, err
	}
	return c.Lookup(ctx, h)
}

// PasswordRange calls fn, in ascending order, for every hash of kind k
// that starts with prefix and appears in the corpus, and returns the
// corpus version. The k-anonymity query: the caller learns every hash
// that shares the prefix, the corpus never learns which one was meant.
func (s *Service) PasswordRange(ctx context.Context, k breachd.HashKind, prefix breachd.RangePrefix, fn func(hash []byte, count uint64)) (uint64, error) {
	c, err := s.passwordCorpus(k)
	if err != nil {
		return 0, err
	}
	return c.Range(ctx, prefix, fn)
}

// AllBreaches returns the whole catalogue, ordered by name; the entries
// are shared.
func (s *Service) AllBreaches(ctx context.Context) ([]*breachd.CatalogEntry, uint64, error) {
	st, err := s.corpus()
	if err != nil {
		return nil, 0, err
	}
	return st.Breaches(ctx)
}

// LatestBreach returns the breach added last (nil for an empty catalogue).
func (s *Service) LatestBreach(ctx context.Context) (*breachd.CatalogEntry, uint64, error) {
	all, v, err := s.AllBreaches(ctx)
	if err != nil || len(all) == 0 {
		return nil, v, err
	}
	latest := all[0]
	for _, b := range all[1:] {
		if b.AddedDate.After(latest.AddedDate) {
			latest = b
		}
	}
	return latest, v, nil
}

// DataClasses returns every data class the catalogue names, sorted and
// each once.
func (s *Service) DataClasses(ctx context.Context) ([]string, uint64, error) {
	all, v, err := s.AllBreaches(ctx)
	if err != nil {
		return nil, v, err
	}
	var out []string
	for _, b := range all {
		out = append(out, b.DataClasses...)
	}
	slices.SortFunc(out, strings.Compare)
	return slices.Compact(out), v, nil
}

// ImportPasswords adds release rel to the corpus of kind k from batches of
// 1 to breachd.MaxBatch records, and commits it when batches ends without
// an error. expected, if known, is about how many records will come.
func (s *Service) ImportPasswords(ctx context.Context, k breachd.HashKind, rel breachd.Breach, expected uint64, batches iter.Seq2[[]breachd.PasswordRecord, error]) (breachd.PasswordImportStats, error) {
	c, err := s.passwordCorpus(k)
	if err != nil {
		return breachd.PasswordImportStats{}, err
	}
	if err := rel.Validate(); err != nil {
		return breachd.PasswordImportStats{}, err
	}
	if s.readOnly != nil {
		return breachd.PasswordImportStats{}, s.readOnly()
	}
	return c.Import(ctx, rel, expected, checked(batches, "hashes", "release "+rel.Name, true))
}
