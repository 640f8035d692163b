package store

import (
	"context"
	"iter"
	"sync"

	"github.com/dgraph-io/badger/v4"

	"github.com/breachd/breachd"
)

// Store is the email corpus: the SHA-256 of canonical email addresses and
// the breaches each is in. It is the corpus engine (engine.go) over the
// email kind, with the lookups that answer a breach list: the filter
// first, then the lookup index (index.go) while it is current, else
// Badger. It is safe for concurrent use; changes are serialised, lookups
// never wait for them.
type Store struct{ corpus }

// Open opens (creating if needed) the email corpus in dir (in a data
// directory: EmailDir; see MigrateLayout for one from before). Rebuilding the
// Bloom filter, when the saved one does not match the data, stops when ctx
// is done.
func Open(ctx context.Context, dir string, opts Options) (*Store, error) {
	s := &Store{}
	if err := s.open(ctx, dir, emailKind, opts); err != nil {
		return nil, err
	}
	return s, nil
}

// OpenPairs opens (creating if needed) the pair corpus in dir (in a data
// directory: PairDir): the digests of email+password pairs
// (breachd.PairDigest) and the breaches of the combolists that carried
// them. It is a Store over the pair kind: the same imports, deletes and
// lookups, whose digests are pairs' rather than accounts'.
func OpenPairs(ctx context.Context, dir string, opts Options) (*Store, error) {
	s := &Store{}
	if err := s.open(ctx, dir, pairKind, opts); err != nil {
		return nil, err
	}
	return s, nil
}

// Import adds breach b to the corpus from batches of digests and commits
// it, visible all at once, when batches ends without an error (see
// corpus.importBreach). Adding a digest twice is harmless.
func (s *Store) Import(ctx context.Context, b breachd.Breach, batches iter.Seq2[[]breachd.Digest, error]) (breachd.ImportStats, error) {
	st, err := s.importBreach(ctx, b, 0, func(yield func(input, error) bool) {
		var in input
		for ds, err := range batches {
			in.keys = appendKeys(in.keys[:0], ds, s.opts.IndexKey)
			in.side = nil
			if err == nil && s.private != nil && s.private.on.Load() {
				in.side, err = s.opts.IndexKey.private.privateRows(ds, in.keys)
			}
			if !yield(in, err) || err != nil {
				return
			}
		}
	})
	return breachd.ImportStats{Breach: b.Name, Received: st.Received, Duplicates: st.Duplicates,
		NewAccounts: st.New, KnownAccounts: st.Known, Version: st.Version}, err
}

// appendKeys appends the digests ds to dst as rows' keys: keyed with key,
// if not nil.
func appendKeys(dst []byte, ds []breachd.Digest, key *IndexKey) []byte {
	for i := range ds {
		if key != nil {
			kd := key.Key(ds[i])
			dst = append(dst, kd[:]...)
		} else {
			dst = append(dst, ds[i][:]...)
		}
	}
	return dst
}

// Lookup returns the visible breaches that digest d appears in, ordered by
// name (empty when it is not exposed), and the corpus version the answer was
// computed against. The slice may be shared with other answers: callers
// must not change it.
func (s *Store) Lookup(ctx context.Context, d breachd.Digest) ([]*breachd.CatalogEntry, uint64, error) {
	// The common case, a digest the filter rejects, takes no lock: the
	// filter stays valid after Close, and Close only needs to wait for
	// calls that use Badger.
	if s.closed.Load() {
		return nil, 0, breachd.ErrClosed
	}
	if k := s.opts.IndexKey; k != nil {
		d = k.Key(d)
	}
	cat := s.cat.Load() // before the filter: see corpus.filter
	// An empty catalogue (before the first import commits) answers no: it
	// never reads Badger while a first import bulk-loads it.
	if len(cat.segments) == 0 || !s.filter.Load().test(d[:]) {
		return nil, cat.version, nil
	}
	// The index answers while it is current for cat, without allocating.
	if v := s.currentView(cat); v != nil {
		bs, ok := v.find(&d)
		s.index.mu.RUnlock()
		if !ok {
			s.falsePositives.Add(1)
		}
		return bs, cat.version, nil
	}
	if err := s.acquire(); err != nil {
		return nil, 0, err
	}
	defer s.release()
	bs, cat, err := readStable(ctx, &s.corpus, cat, func(txn *badger.Txn, cat *catalog) ([]*breachd.CatalogEntry, error) {
		return s.confirm(txn, cat, d[:], nil)
	})
	if err != nil {
		return nil, 0, err
	}
	return bs, cat.version, nil
}

// confirm reads a filter "maybe" in Badger and appends its breaches to dst.
func (s *Store) confirm(txn *badger.Txn, cat *catalog, d []byte, dst []*breachd.CatalogEntry) ([]*breachd.CatalogEntry, error) {
	found, err := s.get(txn, d, func(v []byte) error {
		var err error
		dst, err = cat.resolve(dst, v)
		return err
	})
	if !found && err == nil {
		s.falsePositives.Add(1)
	}
	return dst, err
}

// LookupBatch looks up a batch of digests packed back to back (32 bytes each)
// in one read transaction. It calls hit, in ascending order, for each digest
// that is exposed; the slice it passes is reused between calls or shared with
// other answers: hit must neither keep nor change it. It returns the
// corpus version that every answer in the batch was computed against.
func (s *Store) LookupBatch(ctx context.Context, packed []byte, hit func(i int, breaches []*breachd.CatalogEntry)) (uint64, error) {
	if len(packed)%breachd.DigestSize != 0 {
		return 0, breachd.ErrInvalidDigest
	}
	if s.closed.Load() {
		return 0, breachd.ErrClosed
	}
	cat := s.cat.Load()
	if len(cat.segments) == 0 {
		return cat.version, nil
	}
	if k := s.opts.IndexKey; k != nil {
		// Keyed as they come: the positions hit reports are the batch's.
		kp := keyedPool.Get().(*[]byte)
		defer keyedPool.Put(kp)
		*kp = k.keyPacked((*kp)[:0], packed)
		packed = *kp
	}
	mp := maybePool.Get().(*[]int32)
	defer maybePool.Put(mp)
	maybe := s.filter.Load().testPacked(packed, (*mp)[:0])
	*mp = maybe
	if len(maybe) == 0 {
		return cat.version, nil
	}
	if v := s.currentView(cat); v != nil {
		defer s.index.mu.RUnlock()
		for lo := 0; lo < len(maybe); lo += 1024 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			v.findBatch(packed, maybe[lo:min(lo+1024, len(maybe))], func(i int32, bs []*breachd.CatalogEntry, ok bool) {
				if !ok {
					s.falsePositives.Add(1)
				}
				if len(bs) > 0 {
					hit(int(i), bs)
				}
			})
		}
		return cat.version, nil
	}
	if err := s.acquire(); err != nil {
		return 0, err
	}
	defer s.release()
	// The hits are kept until the read is known to be cat's (readStable):
	// each one's entries, back to back in all, ending at its end.
	type found struct {
		i   int32
		end int
	}
	type read struct {
		hits []found
		all  []*breachd.CatalogEntry
	}
	first := cat
	r, cat, err := readStable(ctx, &s.corpus, cat, func(txn *badger.Txn, cat *catalog) (r read, err error) {
		if cat != first {
			// A change committed: its keys are in the filter published
			// before cat, not in the one tested above.
			maybe = s.filter.Load().testPacked(packed, maybe[:0])
			*mp = maybe
		}
		for j, i := range maybe {
			if j%256 == 0 {
				if err := ctx.Err(); err != nil {
					return r, err
				}
			}
			n := len(r.all)
			r.all, err = s.confirm(txn, cat, packed[int(i)*breachd.DigestSize:(int(i)+1)*breachd.DigestSize], r.all)
			if err != nil {
				return r, err
			}
			if len(r.all) > n {
				r.hits = append(r.hits, found{i, len(r.all)})
			}
		}
		return r, nil
	})
	if err != nil {
		return 0, err
	}
	start := 0
	for _, h := range r.hits {
		hit(int(h.i), r.all[start:h.end])
		start = h.end
	}
	return cat.version, nil
}

// keyedPool holds a keyed corpus's batch of keyed digests.
var keyedPool = sync.Pool{New: func() any { b := make([]byte, 0, breachd.MaxBatch*breachd.DigestSize); return &b }}

// maybePool holds the positions a batch's filter test lets through.
var maybePool = sync.Pool{New: func() any { b := make([]int32, 0, breachd.MaxBatch); return &b }}
