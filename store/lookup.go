package store

import (
	"context"
	"errors"
	"sync"

	"github.com/dgraph-io/badger/v4"

	"github.com/breachd/breachd"
)

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
	c := s.cat.Load() // before the filter: see Store.filter
	// An empty catalogue (before the first import commits) answers no: it
	// never reads Badger while a first import bulk-loads it.
	if len(c.segments) == 0 || !s.filter.Load().test(d[:]) {
		return nil, c.version, nil
	}
	// The index answers while it is current for c, without allocating.
	s.idxMu.RLock()
	if v := s.view.Load(); v != nil && v.cat == c {
		bs, ok := v.find(&d)
		s.idxMu.RUnlock()
		if !ok {
			s.falsePositives.Add(1)
		}
		return bs, c.version, nil
	}
	s.idxMu.RUnlock()
	if err := s.acquire(); err != nil {
		return nil, 0, err
	}
	defer s.release()
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	bs, err := s.get(txn, c, &d, nil)
	return bs, c.version, err
}

// get confirms a filter "maybe" in Badger and appends the breaches to dst.
func (s *Store) get(txn *badger.Txn, c *catalog, d *breachd.Digest, dst []*breachd.CatalogEntry) ([]*breachd.CatalogEntry, error) {
	k := emailKey(d)
	item, err := txn.Get(k[:])
	if errors.Is(err, badger.ErrKeyNotFound) {
		s.falsePositives.Add(1)
		return dst, nil
	}
	if err != nil {
		return dst, classify("get", err)
	}
	err = item.Value(func(v []byte) error {
		var err error
		dst, err = c.resolve(dst, v)
		return err
	})
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
	c := s.cat.Load()
	if len(c.segments) == 0 {
		return c.version, nil
	}
	mp := maybePool.Get().(*[]int32)
	defer maybePool.Put(mp)
	maybe := s.filter.Load().testPacked(packed, (*mp)[:0])
	*mp = maybe
	if len(maybe) == 0 {
		return c.version, nil
	}
	s.idxMu.RLock()
	if v := s.view.Load(); v != nil && v.cat == c {
		defer s.idxMu.RUnlock()
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
		return c.version, nil
	}
	s.idxMu.RUnlock()
	if err := s.acquire(); err != nil {
		return 0, err
	}
	defer s.release()
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	var buf []*breachd.CatalogEntry
	for j, i := range maybe {
		if j%256 == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
		var err error
		buf, err = s.get(txn, c, (*breachd.Digest)(packed[int(i)*breachd.DigestSize:]), buf[:0])
		if err != nil {
			return 0, err
		}
		if len(buf) > 0 {
			hit(int(i), buf)
		}
	}
	return c.version, nil
}

// maybePool holds the positions a batch's filter test lets through.
var maybePool = sync.Pool{New: func() any { b := make([]int32, 0, breachd.MaxBatch); return &b }}
