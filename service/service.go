package service

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/breachd/breachd"
)

// Store is what the use cases need from the corpus at rest. Every answer
// carries the corpus version it was computed against.
type Store interface {
	// Lookup returns the breaches d appears in, ordered by name (empty when
	// it is not exposed).
	Lookup(ctx context.Context, d breachd.Digest) ([]*breachd.CatalogEntry, uint64, error)
	// LookupBatch looks up digests packed back to back and calls hit, in
	// ascending order, for each exposed one; hit's slice is reused.
	LookupBatch(ctx context.Context, packed []byte, hit func(i int, breaches []*breachd.CatalogEntry)) (uint64, error)
	// Breaches returns the whole catalogue ordered by name.
	Breaches(ctx context.Context) ([]*breachd.CatalogEntry, uint64, error)
	// Breach returns one entry or an error wrapping breachd.ErrUnknownBreach.
	Breach(ctx context.Context, name string) (*breachd.CatalogEntry, uint64, error)
	// Import stores the digests batches yields and commits them, all
	// visible at once, when it ends without an error; otherwise nothing
	// becomes visible.
	Import(ctx context.Context, b breachd.Breach, batches iter.Seq2[[]breachd.Digest, error]) (breachd.ImportStats, error)
	// DeleteBreach removes a breach from every answer at once and returns
	// the accounts no longer in any breach, and the new corpus version.
	DeleteBreach(ctx context.Context, name string) (removed, version uint64, err error)
	// UpdateBreach replaces the catalogue entry of a breach in the corpus.
	UpdateBreach(ctx context.Context, b breachd.Breach) (*breachd.CatalogEntry, uint64, error)
}

// Service runs the use cases over a Store. It is safe for concurrent use.
//
// Two rules of a daemon's life are the service's, not its callers': a
// corpus still opening (a large one may rebuild its filter for minutes)
// answers every call with breachd.ErrUnavailable until Open; and a read
// replica refuses every change (WithReadOnly).
type Service struct {
	store     atomic.Pointer[Store]  // nil while the corpus opens
	pairs     *atomic.Pointer[Store] // nil: no pair corpus (WithPairs); holds nil while it opens
	policy    Decider
	changing  chan struct{}          // holds a token while a change's steps across the email and pair corpora run (pairs.go)
	running   atomic.Pointer[string] // what holds it
	passwords map[breachd.HashKind]*atomic.Pointer[PasswordCorpus]
	readOnly  func() error             // non-nil on a read replica: why a change is refused
	watch     atomic.Pointer[watching] // nil until OpenWatchlists
}

// New returns the use cases over st. With st nil, the corpus is still
// opening: every call answers breachd.ErrUnavailable until Open.
func New(st Store, opts ...Option) *Service {
	s := &Service{passwords: map[breachd.HashKind]*atomic.Pointer[PasswordCorpus]{}, changing: make(chan struct{}, 1)}
	if st != nil {
		s.Open(st)
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Open serves st from now on.
func (s *Service) Open(st Store) { s.store.Store(&st) }

// WithReadOnly makes the service a read replica's: every change is refused
// with the error refuse returns (it says where the writer is).
func WithReadOnly(refuse func() error) Option { return func(s *Service) { s.readOnly = refuse } }

// ErrOpening answers while the corpus opens.
var ErrOpening = breachd.NewError(breachd.ErrUnavailable, "the corpus is still opening")

// corpus returns the email corpus, or ErrOpening.
func (s *Service) corpus() (Store, error) {
	if st := s.store.Load(); st != nil {
		return *st, nil
	}
	return nil, ErrOpening
}

// writable returns the email corpus for a change: refused on a replica.
func (s *Service) writable() (Store, error) {
	if s.readOnly != nil {
		return nil, s.readOnly()
	}
	return s.corpus()
}

// checked passes batches through, refusing an empty one or one over
// breachd.MaxBatch (items named what), and, with some, a stream that
// ended without any item, which name's import may not commit.
func checked[T any](batches iter.Seq2[[]T, error], what, name string, some bool) iter.Seq2[[]T, error] {
	return func(yield func([]T, error) bool) {
		var n int
		for xs, err := range batches {
			if err == nil {
				switch {
				case len(xs) == 0:
					err = fmt.Errorf("%w: empty, want 1 to %d %s", breachd.ErrInvalidBatch, breachd.MaxBatch, what)
				case len(xs) > breachd.MaxBatch:
					err = fmt.Errorf("%w: got %d %s, want at most %d per batch: split it", breachd.ErrInvalidBatch, len(xs), what, breachd.MaxBatch)
				}
			}
			if !yield(xs, err) || err != nil {
				return
			}
			n += len(xs)
		}
		if n == 0 && some {
			yield(nil, fmt.Errorf("%w for %s: nothing was committed", breachd.ErrEmptyImport, name))
		}
	}
}

// Check answers for one digest.
func (s *Service) Check(ctx context.Context, d breachd.Digest) (breachd.Exposure, error) {
	st, err := s.corpus()
	if err != nil {
		return breachd.Exposure{}, err
	}
	bs, version, err := st.Lookup(ctx, d)
	if err != nil {
		return breachd.Exposure{}, err
	}
	return breachd.Exposure{Breaches: bs, CorpusVersion: version}, nil
}

// CheckBatch answers for a batch of 1 to breachd.MaxBatch digests packed back
// to back. The answer lists the exposed positions, each with an index into
// the batch's distinct breach sets, so a hit costs a few bytes however many
// breaches it names.
func (s *Service) CheckBatch(ctx context.Context, packed []byte) (breachd.BatchExposure, error) {
	if err := breachd.ValidateBatch(packed); err != nil {
		return breachd.BatchExposure{}, err
	}
	st, err := s.corpus()
	if err != nil {
		return breachd.BatchExposure{}, err
	}
	ans := breachd.BatchExposure{Count: len(packed) / breachd.DigestSize}
	version, err := st.LookupBatch(ctx, packed, func(i int, bs []*breachd.CatalogEntry) {
		set := slices.IndexFunc(ans.Sets, func(x []*breachd.CatalogEntry) bool { return slices.Equal(x, bs) })
		if set < 0 { // the sets in a batch are few: a scan beats a map
			set = len(ans.Sets)
			ans.Sets = append(ans.Sets, slices.Clone(bs))
		}
		ans.Exposed = append(ans.Exposed, uint32(i))
		ans.SetOf = append(ans.SetOf, uint32(set))
	})
	if err != nil {
		return breachd.BatchExposure{}, err
	}
	ans.CorpusVersion = version
	return ans, nil
}

// Catalogue pages. A maximal entry (breachd's field limits) is about 21 KB,
// so a page of MaxPageSize entries stays near 2 MB, well inside a 4 MiB
// message limit.
const (
	DefaultPageSize = 50
	MaxPageSize     = 100
)

// PageRequest asks for one page of the catalogue, in the manner of Google's
// AIP-158: Size 0 means DefaultPageSize, more than MaxPageSize means
// MaxPageSize, a negative size is invalid; Token is empty for the first page
// and otherwise a NextToken from an earlier answer.
type PageRequest struct {
	Size  int
	Token string
	// Kind, if not 0, asks for the releases of that password corpus
	// instead of the breaches of accounts.
	Kind breachd.HashKind
}

// BreachPage is one page of the catalogue, ordered by name.
type BreachPage struct {
	Breaches []*breachd.CatalogEntry
	// NextToken asks for the next page; empty on the last one.
	NextToken string
	// CorpusVersion is the version this page was read at. Pages are
	// consistent on their own; a catalogue that changes between two pages
	// goes on after the last name returned.
	CorpusVersion uint64
}

// tokenPrefix versions the page token's format.
const tokenPrefix = "n1:"

// ListBreaches returns one page of the catalogue.
func (s *Service) ListBreaches(ctx context.Context, req PageRequest) (BreachPage, error) {
	size := req.Size
	switch {
	case size < 0:
		return BreachPage{}, breachd.Errorf(breachd.ErrInvalidArgument, "page_size: got %d, want 0 (the default, %d) or more", size, DefaultPageSize)
	case size == 0:
		size = DefaultPageSize
	case size > MaxPageSize:
		size = MaxPageSize
	}
	after, err := parseToken(req.Token)
	if err != nil {
		return BreachPage{}, err
	}
	all, version, err := s.catalogue(ctx, req.Kind)
	if err != nil {
		return BreachPage{}, err
	}
	start, _ := slices.BinarySearchFunc(all, after, func(e *breachd.CatalogEntry, name string) int {
		return strings.Compare(e.Name, name)
	})
	if start < len(all) && after != "" && all[start].Name == after {
		start++
	}
	end := min(start+size, len(all))
	page := BreachPage{Breaches: all[start:end:end], CorpusVersion: version}
	if end < len(all) {
		page.NextToken = base64.RawURLEncoding.EncodeToString([]byte(tokenPrefix + all[end-1].Name))
	}
	return page, nil
}

// catalogue returns the breaches of accounts (kind 0) or the releases of
// the password corpus of kind, with that corpus's version.
func (s *Service) catalogue(ctx context.Context, kind breachd.HashKind) ([]*breachd.CatalogEntry, uint64, error) {
	if kind != 0 {
		c, err := s.passwordCorpus(kind)
		if err != nil {
			return nil, 0, err
		}
		return c.Breaches(ctx)
	}
	st, err := s.corpus()
	if err != nil {
		return nil, 0, err
	}
	return st.Breaches(ctx)
}

// parseToken returns the last name of the previous page ("" for none).
func parseToken(tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	name, ok := strings.CutPrefix(string(raw), tokenPrefix)
	if err != nil || !ok || breachd.ValidateName(name) != nil {
		return "", breachd.Errorf(breachd.ErrInvalidArgument, "page_token: %s is not a token from an earlier answer; start again with an empty token",
			breachd.Quote(tok))
	}
	return name, nil
}

// GetBreach returns one catalogue entry and the corpus version: the breach
// of that name, else the one whose name differs from it only in case, as
// Have I Been Pwned finds them (its clients ask for "linkedin").
func (s *Service) GetBreach(ctx context.Context, name string) (*breachd.CatalogEntry, uint64, error) {
	if err := validName(name, "breach"); err != nil {
		return nil, 0, err
	}
	st, err := s.corpus()
	if err != nil {
		return nil, 0, err
	}
	b, v, err := st.Breach(ctx, name)
	if !errors.Is(err, breachd.ErrNotFound) {
		return b, v, err
	}
	others, v, ferr := otherCases(ctx, st, name)
	switch {
	case ferr != nil:
		return nil, 0, ferr
	case len(others) == 1:
		return others[0], v, nil
	}
	return nil, 0, unknownBreach(err, others)
}

// otherCases returns the breaches of st whose names differ from name only
// in case, and the corpus version. Since names are compared whatever their
// case (by upstream's API, and by people), an import refuses a new name
// that differs only in case from one held; a corpus from before that rule
// may hold more than one.
func otherCases(ctx context.Context, st Store, name string) ([]*breachd.CatalogEntry, uint64, error) {
	bs, v, err := st.Breaches(ctx)
	if err != nil {
		return nil, 0, err
	}
	var out []*breachd.CatalogEntry
	for _, b := range bs {
		if b.Name != name && strings.EqualFold(b.Name, name) {
			out = append(out, b)
		}
	}
	return out, v, nil
}

// unknownBreach adds to err, a breach not found, the names that differ from
// the one asked for only in case: the breach the caller most likely meant.
func unknownBreach(err error, others []*breachd.CatalogEntry) error {
	if len(others) == 0 {
		return err
	}
	names := make([]string, len(others))
	for i, b := range others {
		names[i] = breachd.Quote(b.Name)
	}
	return breachd.Errorf(breachd.ErrUnknownBreach, "%v (names are matched exactly here: the corpus has %s)", err, strings.Join(names, ", "))
}

// caseTwin checks the name of a change: a missing breach that another
// differs from only in case gets that one's name in its error.
func caseTwin(ctx context.Context, st Store, name string, err error) error {
	if !errors.Is(err, breachd.ErrNotFound) {
		return err
	}
	others, _, ferr := otherCases(ctx, st, name)
	if ferr != nil {
		return err
	}
	return unknownBreach(err, others)
}

// validName checks the name of a noun (a breach, a watchlist: the same
// rule).
func validName(name, noun string) error {
	if name == "" {
		return breachd.Errorf(breachd.ErrInvalidArgument, "name: empty, want a %s name", noun)
	}
	if breachd.ValidateName(name) != nil {
		return breachd.Errorf(breachd.ErrInvalidArgument, "name: %s is not a %s name: want 1 to %d letters, digits, '.', '_' or '-', starting with a letter or digit",
			breachd.Quote(name), noun, breachd.MaxNameLen)
	}
	return nil
}

// DeleteBreach removes breach name from every answer at once; accounts no
// other breach holds are deleted. It returns how many, and the new version.
func (s *Service) DeleteBreach(ctx context.Context, name string) (removed, version uint64, err error) {
	if err := validName(name, "breach"); err != nil {
		return 0, 0, err
	}
	st, err := s.writable()
	if err != nil {
		return 0, 0, err
	}
	if err := s.lockChange(ctx, "the delete of breach "+name); err != nil {
		return 0, 0, err
	}
	defer s.unlockChange()
	removed, version, err = st.DeleteBreach(ctx, name)
	if errors.Is(err, breachd.ErrNotFound) {
		// Deleted already, perhaps by a delete cut short before its
		// passwords went: finish that one.
		if done, perr := s.deletePasswordsOf(ctx, name); perr == nil && done {
			_, version, _ = st.Breaches(ctx)
			return 0, version, nil
		}
		return removed, version, caseTwin(ctx, st, name, err)
	}
	if err != nil {
		return removed, version, err
	}
	if _, err := s.deletePasswordsOf(ctx, name); err != nil {
		return removed, version, fmt.Errorf("breach %s was deleted, but not yet its passwords (no answer reads its pairs; run the delete again): %w", name, err)
	}
	return removed, version, nil
}

// UpdateBreach corrects the catalogue entry of a breach in the corpus:
// everything but its accounts, which only an import changes.
func (s *Service) UpdateBreach(ctx context.Context, b breachd.Breach) (*breachd.CatalogEntry, uint64, error) {
	if err := b.Validate(); err != nil {
		return nil, 0, err
	}
	st, err := s.writable()
	if err != nil {
		return nil, 0, err
	}
	e, v, err := st.UpdateBreach(ctx, b)
	return e, v, caseTwin(ctx, st, b.Name, err)
}

// Import adds breach b from batches of 1 to breachd.MaxBatch digests and
// commits it when batches ends without an error. An import that received no
// digest fails with breachd.ErrEmptyImport and commits nothing; so does one
// whose batches yield an error, or whose ctx ends.
func (s *Service) Import(ctx context.Context, b breachd.Breach, batches iter.Seq2[[]breachd.Digest, error]) (breachd.ImportStats, error) {
	if err := b.Validate(); err != nil {
		return breachd.ImportStats{}, err
	}
	st, err := s.writable()
	if err != nil {
		return breachd.ImportStats{}, err
	}
	if err := s.lockChange(ctx, "the import of breach "+b.Name); err != nil {
		return breachd.ImportStats{}, err
	}
	defer s.unlockChange()
	b.Pairs = 0 // never a manifest's
	if _, err := s.keepInStep(ctx, st, b.Name, false); err != nil {
		return breachd.ImportStats{}, err
	}
	return st.Import(ctx, b, checked(batches, "digests", "breach "+b.Name, true))
}

// AtLeast refuses an answer computed at corpus version v when the caller
// asked for min or later (0: any): a read replica that is behind says so
// with a kind the client library retries, on another replica.
func AtLeast(v, min uint64) error {
	if v >= min {
		return nil
	}
	return breachd.Errorf(breachd.ErrUnavailable, "this daemon serves corpus version %d, behind the version %d asked for: it has not caught up with its writer yet",
		v, min)
}
