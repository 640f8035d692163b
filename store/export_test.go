package store

import (
	"context"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/breachd/breachd"
)

// PrivateRows counts the private rows in Badger, collected or not.
func (s *Store) PrivateRows() (int, error) {
	var n int
	err := s.db.View(func(txn *badger.Txn) error {
		keys, err := keysUnder(txn, []byte{tagPrivate})
		n = len(keys)
		return err
	})
	return n, err
}

// RowEntries returns the number of entries in d's latest row in Badger,
// whatever the catalogue says of them: 0 once a collection has removed
// the row.
func (s *Store) RowEntries(d breachd.Digest) (int, error) {
	var n int
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := s.get(txn, d[:], func(v []byte) error {
			n = len(v) / s.kind.entrySize()
			return nil
		})
		return err
	})
	return n, err
}

// SetCrashPoint makes the store call f at each named crash point (see
// reach); the crash harness's child kills itself there.
func SetCrashPoint(f func(name string)) { crashPoint = f }

// MakeWords allocates filter words as the filter does (2 MiB aligned, huge
// pages advised), for the floor benchmark.
func MakeWords(n uint64) []uint64 { return makeWords(n) }

// WithMaxOverlay bounds the rows a base view takes (below 0: none, every
// rebuild writes a whole index).
func WithMaxOverlay(o Options, n int) Options {
	o.maxOverlay = n
	return o
}

// WithMaxDelta bounds the rows a lookup index's delta takes before it is
// compacted, and an import keeps for it; deltas are kept between imports
// until they pass it (not compacted after each), so that deletes, updates
// and imports meet views with deltas.
func WithMaxDelta(o Options, n int) Options {
	o.maxDelta = n
	return o
}

// WithIndexSettle sets how long a lookup index's delta waits for changes
// to pause before it is compacted.
func WithIndexSettle(o Options, d time.Duration) Options {
	o.indexSettle = d
	return o
}

// WithFilterLog bounds the filter's log in bytes (below 0: none, every
// save writes the whole filter).
func WithFilterLog(o Options, n int64) Options {
	o.filterLog = n
	return o
}

// WithHook returns o with f called at each named point of the store's work
// (Store.reach): a test stops, cancels or counts there.
func WithHook(o Options, f func(point string)) Options {
	o.hook = f
	return o
}

// BreachesOf returns the releases whose committed entries hold key (its
// first keySize bytes), as Store.Lookup answers for an account: the
// conformance suite checks the engine's visibility rules on a password
// corpus through it.
func (p *Passwords) BreachesOf(ctx context.Context, key []byte) ([]*breachd.CatalogEntry, uint64, error) {
	key = key[:p.kind.keySize]
	if p.closed.Load() {
		return nil, 0, breachd.ErrClosed
	}
	cat := p.cat.Load()
	fk := p.kind.filterKey(key)
	if len(cat.segments) == 0 || !p.filter.Load().test(fk[:]) {
		return nil, cat.version, nil
	}
	if err := p.acquire(); err != nil {
		return nil, 0, err
	}
	defer p.release()
	bs, cat, err := readStable(ctx, &p.corpus, cat, func(txn *badger.Txn, cat *catalog) (bs []*breachd.CatalogEntry, err error) {
		_, err = p.get(txn, key, func(v []byte) error {
			bs, err = cat.resolve(nil, v)
			return err
		})
		return bs, err
	})
	if err != nil {
		return nil, 0, err
	}
	return bs, cat.version, nil
}

// RebuildIndexFromBadger writes and opens (then drops) an index of the
// whole corpus read from Badger, as a replica did after every applied
// backup before deltas were merged into its index, and says how long it
// took.
func (s *Store) RebuildIndexFromBadger(ctx context.Context) (time.Duration, error) {
	if err := s.acquire(); err != nil {
		return 0, err
	}
	defer s.release()
	start := time.Now()
	x, err := s.writeIndex(ctx, s.cat.Load(), s.keys.Load())
	if err != nil {
		return 0, err
	}
	d := time.Since(start)
	unmapFile(x.mapped)
	return d, nil
}

// CompactNow does at once what Badger's compactions do over time: it
// flushes the memtable and compacts level 0 into the level below, dropping
// every version no reader holds, deleted keys' markers included (a
// DropPrefix of a key written for the purpose flushes and compacts).
func (c *corpus) CompactNow() error {
	junk := []byte{0xff, 'c', 'o', 'm', 'p', 'a', 'c', 't'}
	if err := c.db.Update(func(txn *badger.Txn) error { return txn.Set(junk, nil) }); err != nil {
		return err
	}
	return c.db.DropPrefix(junk)
}

// Rows counts the corpus's rows in Badger, collected or not: a replica's
// must equal its writer's once a delta has carried every delete.
func (c *corpus) Rows() (int, error) {
	var n int
	err := c.db.View(func(txn *badger.Txn) error {
		keys, err := keysUnder(txn, []byte{c.kind.tag})
		n = len(keys)
		return err
	})
	return n, err
}

// RangeOf returns the range prefix (the first 20 bits) of a hash key.
func RangeOf(key []byte) breachd.RangePrefix { return breachd.RangePrefix(rangeOf(key)) }
