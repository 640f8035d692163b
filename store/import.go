package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/breachd/breachd"
)

// ImportStats counts what an import did.
type ImportStats struct {
	Breach string
	// Received is the number of digests passed to Add.
	Received uint64
	// Duplicates were already recorded for this breach: repeats within the
	// dump, or rows of an earlier import of the same breach.
	Duplicates uint64
	// NewAccounts were in no breach before.
	NewAccounts uint64
	// KnownAccounts were already stored for other breaches and are now linked
	// to this one as well.
	KnownAccounts uint64
	// Version is the corpus version after the commit (0 before it).
	Version uint64
}

// Import adds one breach to the corpus. Rows added with Add are stored under
// a pending segment that lookups ignore; Commit makes them all visible at
// once. Only one import runs at a time. An Import is not safe for concurrent use.
type Import struct {
	s       *Store
	breach  breachd.Breach
	seg     uint32
	mine    map[uint32]bool // this import's segment and the breach's committed ones
	started time.Time
	isBulk  bool // first import into the store: see bulk.go

	bulk []breachd.Digest // buffered rows of a bulk load; guarded by mu

	mu    sync.Mutex // guards stats and done
	stats ImportStats
	done  bool
}

// BeginImport starts an import of breach b, waiting (as long as ctx allows)
// for any import already running to finish.
func (s *Store) BeginImport(ctx context.Context, b breachd.Breach) (*Import, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	select {
	case s.importSem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the running import: %w", ctx.Err())
	}
	imp, err := s.beginImport(b)
	if err != nil {
		<-s.importSem
		return nil, err
	}
	return imp, nil
}

func (s *Store) beginImport(b breachd.Breach) (*Import, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release()
	imp := &Import{s: s, breach: b, mine: map[uint32]bool{}, started: time.Now()}
	imp.stats.Breach = b.Name
	if s.cat.Load().version == 0 {
		imp.isBulk, imp.seg = true, 1
		imp.mine[imp.seg] = true
		s.log.Info("import started", "breach", b.Name, "segment", imp.seg, "bulk", true)
		return imp, nil
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		var last uint32
		err := scan(txn, tagSegment, func(k, v []byte) error {
			id := binary.BigEndian.Uint32(k[1:])
			last = max(last, id)
			var r segmentRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("%w: segment record: %v", ErrCorrupt, err)
			}
			if r.Committed && r.Breach == b.Name {
				imp.mine[id] = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		imp.seg = last + 1
		imp.mine[imp.seg] = true
		v, err := json.Marshal(segmentRecord{Breach: b.Name})
		if err != nil {
			return err
		}
		return txn.Set(segmentKey(imp.seg), v)
	})
	if err != nil {
		return nil, classify("begin import", err)
	}
	s.log.Info("import started", "breach", b.Name, "segment", imp.seg)
	return imp, nil
}

// Add stores a batch of digests for the breach. They stay invisible to
// lookups until Commit. Adding a digest twice is harmless.
func (imp *Import) Add(ctx context.Context, digests []breachd.Digest) error {
	imp.mu.Lock()
	defer imp.mu.Unlock()
	if imp.done {
		return ErrImportDone
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s := imp.s
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	if imp.isBulk {
		imp.addBulk(digests)
		return nil
	}

	ds := slices.Clone(digests)
	slices.SortFunc(ds, func(a, b breachd.Digest) int { return bytes.Compare(a[:], b[:]) })
	ds = slices.Compact(ds)
	var st ImportStats
	st.Received = uint64(len(digests))
	st.Duplicates = uint64(len(digests) - len(ds))

	f := s.filter.Load()
	c := s.cat.Load()
	keys := make([][]byte, 0, len(ds))
	vals := make([][]byte, 0, len(ds))
	var fresh [][]byte // digests new to the store, for the filter
	err := s.db.View(func(txn *badger.Txn) error {
		for i := range ds {
			k := emailKey(&ds[i])
			var old []byte
			if f.test(k[1:]) {
				item, err := txn.Get(k[:])
				switch {
				case err == nil:
					if old, err = item.ValueCopy(nil); err != nil {
						return err
					}
					if len(old)%4 != 0 {
						return fmt.Errorf("%w: membership value of %d bytes", ErrCorrupt, len(old))
					}
				case !errors.Is(err, badger.ErrKeyNotFound):
					return err
				}
			}
			if old != nil && imp.has(old) {
				st.Duplicates++
				continue
			}
			keys = append(keys, k[:])
			vals = append(vals, binary.BigEndian.AppendUint32(old, imp.seg))
			if old == nil {
				fresh = append(fresh, k[1:])
			}
			// Rows left by an abandoned import are stored but were never
			// visible: the account is new to anyone asking.
			if c.visible(old) {
				st.KnownAccounts++
			} else {
				st.NewAccounts++
			}
		}
		return nil
	})
	if err != nil {
		return classify("read batch", err)
	}
	// The filter learns a digest before Badger stores it: no false negatives.
	for _, k := range fresh {
		f.add(k)
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for i := range keys {
		if err := wb.Set(keys[i], vals[i]); err != nil {
			return classify("write batch", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return classify("write batch", err)
	}
	total := s.keys.Add(uint64(len(fresh)))
	imp.stats.Received += st.Received
	imp.stats.Duplicates += st.Duplicates
	imp.stats.NewAccounts += st.NewAccounts
	imp.stats.KnownAccounts += st.KnownAccounts
	// Keep the filter's false-positive rate near its target as the corpus grows.
	if total > f.cap+f.cap/2 {
		return s.rebuildFilter(ctx, 2*total)
	}
	return nil
}

// has reports whether a membership value already names this breach.
func (imp *Import) has(val []byte) bool {
	for i := 0; i+4 <= len(val); i += 4 {
		if imp.mine[binary.BigEndian.Uint32(val[i:])] {
			return true
		}
	}
	return false
}

// Stats returns the counts so far.
func (imp *Import) Stats() ImportStats {
	imp.mu.Lock()
	defer imp.mu.Unlock()
	return imp.stats
}

// Commit makes every row added so far visible at once, records the breach in
// the catalogue and bumps the corpus version.
func (imp *Import) Commit(ctx context.Context) (ImportStats, error) {
	imp.mu.Lock()
	defer imp.mu.Unlock()
	if imp.done {
		return imp.stats, ErrImportDone
	}
	if err := ctx.Err(); err != nil {
		return imp.stats, err
	}
	s := imp.s
	if err := s.acquire(); err != nil {
		return imp.stats, err
	}
	defer s.release()

	var bulkFilter *filter
	if imp.isBulk {
		var err error
		if bulkFilter, err = imp.commitBulk(ctx); err != nil {
			return imp.stats, err
		}
	}
	old := s.cat.Load()
	rec := breachRecord{Breach: imp.breach}
	if prev := old.byName[imp.breach.Name]; prev != nil {
		rec.AccountCount = prev.AccountCount
	}
	rec.AccountCount += int64(imp.stats.NewAccounts + imp.stats.KnownAccounts)
	if rec.AddedDate.IsZero() {
		rec.AddedDate = time.Now().UTC().Truncate(time.Second)
	}
	version := old.version + 1
	err := s.db.Update(func(txn *badger.Txn) error {
		seg, err := json.Marshal(segmentRecord{Breach: imp.breach.Name, Committed: true})
		if err != nil {
			return err
		}
		br, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if err := txn.Set(segmentKey(imp.seg), seg); err != nil {
			return err
		}
		if err := txn.Set(breachKey(imp.breach.Name), br); err != nil {
			return err
		}
		return txn.Set(keyVersion, binary.BigEndian.AppendUint64(nil, version))
	})
	if err == nil {
		err = s.db.Sync()
	}
	if err != nil {
		return imp.stats, classify("commit import", err)
	}
	if bulkFilter != nil { // the filter learns the digests before lookups may see them
		s.filter.Store(bulkFilter)
		s.keys.Store(imp.stats.NewAccounts)
	}
	breaches := maps.Clone(old.byName)
	breaches[rec.Name] = &Breach{Breach: rec.Breach, AccountCount: rec.AccountCount}
	segs := maps.Clone(old.segNames)
	segs[imp.seg] = rec.Name
	s.cat.Store(newCatalog(version, breaches, segs))

	imp.finish()
	imp.stats.Version = version
	if err := s.saveFilter(); err != nil {
		s.log.Warn("saving bloom filter failed; it will be rebuilt at next start", "err", err)
	}
	s.log.Info("import committed", "breach", rec.Name, "received", imp.stats.Received,
		"new_accounts", imp.stats.NewAccounts, "known_accounts", imp.stats.KnownAccounts,
		"duplicates", imp.stats.Duplicates, "corpus_version", version, "duration", time.Since(imp.started))
	return imp.stats, nil
}

// Abort ends the import without making its rows visible. The rows stay
// stored under a pending segment; importing the breach again completes it.
// Abort after Commit does nothing.
func (imp *Import) Abort() {
	imp.mu.Lock()
	defer imp.mu.Unlock()
	if imp.done {
		return
	}
	imp.finish()
	imp.bulk = nil
	imp.s.log.Warn("import abandoned", "breach", imp.breach.Name, "received", imp.stats.Received)
}

// finish releases the import token; callers hold imp.mu.
func (imp *Import) finish() {
	imp.done = true
	<-imp.s.importSem
}
