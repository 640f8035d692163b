package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/breachd/breachd"
)

// Import adds breach b to the corpus from batches of digests, waiting (as
// long as ctx allows) for any import already running to finish. The rows are
// stored under a pending segment that lookups ignore; when batches ends
// without an error they are committed and become visible all at once. If
// batches yields an error, ctx ends or storing fails, nothing becomes
// visible, and importing the breach again completes it. Adding a digest twice
// is harmless.
func (s *Store) Import(ctx context.Context, b breachd.Breach, batches iter.Seq2[[]breachd.Digest, error]) (breachd.ImportStats, error) {
	if err := b.Validate(); err != nil {
		return breachd.ImportStats{}, err
	}
	done, err := s.takeImportToken(ctx)
	if err != nil {
		return breachd.ImportStats{}, err
	}
	imp, err := s.beginImport(ctx, b)
	if err != nil {
		done()
		return breachd.ImportStats{}, err
	}
	committed := false
	defer func() {
		imp.removeSpills()
		s.importReceived.Store(0)
		if committed {
			s.imports.WithLabelValues("committed").Inc()
			done()
			return
		}
		s.imports.WithLabelValues("abandoned").Inc()
		s.log.Warn("import abandoned", "breach", b.Name, "received", imp.stats.Received)
		if imp.isBulk {
			done() // a bulk load writes nothing before its commit
			return
		}
		// Its rows are collected now, by the store: the next change waits
		// for that, and a Close leaves it to the next open.
		s.handOff(done, "collecting an abandoned import", func(ctx context.Context) error {
			_, err := s.collectOutstanding(ctx)
			return err
		})
	}()
	for ds, err := range batches {
		if err != nil {
			return imp.stats, err
		}
		if err := ctx.Err(); err != nil {
			return imp.stats, err
		}
		if err := imp.add(ctx, ds); err != nil {
			return imp.stats, err
		}
		s.importReceived.Add(uint64(len(ds)))
	}
	st, err := imp.commit(ctx)
	committed = err == nil
	return st, err
}

// takeImportToken waits, as long as ctx allows, until no import, delete,
// correction or collection runs, and returns the function that ends the wait
// of the next one. Everything that changes the corpus holds the token.
func (s *Store) takeImportToken(ctx context.Context) (release func(), err error) {
	if s.opts.Follower {
		return nil, ErrFollower
	}
	return s.takeToken(ctx)
}

// ErrFollower refuses a change to a read replica's store: it changes only
// by the writer's backups.
var ErrFollower = breachd.NewError(breachd.ErrFailedPrecondition, "this corpus is a read replica: it changes only by what its writer publishes")

// takeToken is takeImportToken for backups, which replicas take too.
func (s *Store) takeToken(ctx context.Context) (release func(), err error) {
	if s.readOnly != nil {
		return nil, s.readOnly
	}
	select {
	case s.importSem <- struct{}{}:
		return func() { <-s.importSem }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the running import: %w", ctx.Err())
	}
}

// importTx is one running import. Only Import drives it, from one goroutine,
// while holding the import token.
type importTx struct {
	s       *Store
	breach  breachd.Breach
	seg     uint32
	mine    map[uint32]bool // this import's segment and the breach's committed ones
	started time.Time
	isBulk  bool // first import into the store: see bulk.go

	bulk    []breachd.Digest // buffered rows of a bulk load
	spills  []string         // sorted runs of the bulk load spilled to files (spill.go)
	spilled uint64           // distinct digests in them
	// filter is a private copy of the published filter plus this import's
	// digests, made at the first add. Commit publishes it; until then no
	// lookup reads it, so it is written without atomics or locks.
	filter *filter
	// index is the lookup index a bulk load writes as it goes (bulk.go);
	// nil otherwise.
	index *indexWriter
	stats breachd.ImportStats
}

func (s *Store) beginImport(ctx context.Context, b breachd.Breach) (*importTx, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release()
	imp := &importTx{s: s, breach: b, mine: map[uint32]bool{}, started: time.Now()}
	imp.stats.Breach = b.Name
	if s.cat.Load().version == 0 {
		imp.isBulk, imp.seg = true, bulkSegment
		imp.mine[imp.seg] = true
		s.log.Info("import started", "breach", b.Name, "segment", imp.seg, "bulk", true)
		return imp, nil
	}
	if err := imp.newSegment(ctx); err != nil {
		return nil, err
	}
	s.log.Info("import started", "breach", b.Name, "segment", imp.seg)
	return imp, nil
}

// newSegment records a new pending segment for the import, with an id no
// segment ever had (allocSegment), and notes the breach's committed
// segments. Callers hold the import token.
func (imp *importTx) newSegment(ctx context.Context) error {
	s, b := imp.s, imp.breach
	for collected := false; ; collected = true {
		clear(imp.mine)
		err := s.db.Update(func(txn *badger.Txn) error {
			err := scan(txn, tagSegment, func(k, v []byte) error {
				var r segmentRecord
				if err := json.Unmarshal(v, &r); err != nil {
					return fmt.Errorf("%w: segment record: %v", ErrCorrupt, err)
				}
				if r.Committed && r.Breach == b.Name {
					imp.mine[binary.BigEndian.Uint32(k[1:])] = true
				}
				return nil
			})
			if err != nil {
				return err
			}
			if imp.seg, err = allocSegment(txn); err != nil {
				return err
			}
			imp.mine[imp.seg] = true
			return setSegment(txn, imp.seg, b.Name, false)
		})
		if !errors.Is(err, errLegacyCounter) || collected {
			return classify("begin import", err)
		}
		// A corpus from before the counter, with a delete's rows still to
		// collect: collect them first, so that no id they name is reused.
		s.log.Info("collecting a deleted breach's rows before the import", "breach", b.Name)
		if _, _, err := s.collect(ctx, nil, 0); err != nil {
			return err
		}
	}
}

// leaveBulk turns a bulk load whose buffer would pass MaxBulkDigests into
// an ordinary import: a segment of its own and write batches, starting with
// what was buffered. Memory stays bounded; the corpus is the same.
func (imp *importTx) leaveBulk(ctx context.Context) error {
	s := imp.s
	buffered := imp.merged() // reads the buffer and the spilled runs
	received := imp.stats.Received
	imp.isBulk = false
	imp.stats = breachd.ImportStats{Breach: imp.breach.Name}
	if err := s.acquire(); err != nil {
		return err
	}
	err := imp.newSegment(ctx)
	s.release()
	if err != nil {
		return err
	}
	s.log.Info("bulk load over its bound; going on with write batches", "breach", imp.breach.Name,
		"buffered", imp.spilled+uint64(len(imp.bulk)), "max_bulk_digests", s.opts.MaxBulkDigests, "segment", imp.seg)
	batch := make([]breachd.Digest, 0, breachd.MaxBatch)
	for d, err := range buffered {
		if err != nil {
			return err
		}
		if batch = append(batch, d); len(batch) == cap(batch) {
			if err := imp.add(ctx, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		if err := imp.add(ctx, batch); err != nil {
			return err
		}
	}
	// The replay counted only distinct digests: the repeats within the
	// buffered ones were duplicates.
	imp.stats.Received = received
	imp.stats.Duplicates = received - imp.stats.NewAccounts - imp.stats.KnownAccounts
	imp.bulk = nil
	imp.removeSpills()
	return nil
}

// add stores a batch of digests under the import's pending segment.
func (imp *importTx) add(ctx context.Context, digests []breachd.Digest) error {
	s := imp.s
	if max := s.opts.MaxBulkDigests; imp.isBulk && max > 0 && len(imp.bulk)+len(digests) > max {
		if err := imp.leaveBulk(ctx); err != nil {
			return err
		}
	}
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	if imp.isBulk {
		// Nothing is written before the commit; refuse early anyway.
		if err := s.checkSpace(int64(len(imp.bulk)+len(digests))*bulkBytesPerDigest, "the bulk load of "+imp.breach.Name); err != nil {
			return err
		}
		return imp.addBulk(digests)
	}
	if err := s.checkSpace(int64(len(digests))*batchBytesPerDigest, "a batch of "+imp.breach.Name); err != nil {
		return err
	}
	if imp.filter == nil {
		f, err := s.filter.Load().clone()
		if err != nil {
			return err
		}
		imp.filter = f
	}

	ds := slices.Clone(digests)
	slices.SortFunc(ds, func(a, b breachd.Digest) int { return bytes.Compare(a[:], b[:]) })
	ds = slices.Compact(ds)
	var st breachd.ImportStats
	st.Received = uint64(len(digests))
	st.Duplicates = uint64(len(digests) - len(ds))

	f := imp.filter
	c := s.cat.Load()
	keys := make([][]byte, 0, len(ds))
	vals := make([][]byte, 0, len(ds))
	var fresh [][]byte // digests not stored before, for the filter
	err := s.db.View(func(txn *badger.Txn) error {
		for i := range ds {
			k := emailKey(&ds[i])
			var old []byte
			// The private filter holds every committed digest and this
			// import's own: a "no" means nothing to merge with. (Rows of an
			// abandoned import may be missed; they were never visible and
			// are simply replaced.)
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
	if err := writeRows(s.db, keys, vals); err != nil {
		return err
	}
	s.reach("import-batch")
	for _, k := range fresh {
		f.add(k)
	}
	imp.stats.Received += st.Received
	imp.stats.Duplicates += st.Duplicates
	imp.stats.NewAccounts += st.NewAccounts
	imp.stats.KnownAccounts += st.KnownAccounts
	// Keep the false-positive rate near its target as the corpus grows: the
	// rebuilt filter holds every stored digest, this import's included.
	if total := s.keys.Load() + imp.stats.NewAccounts; total > f.cap+f.cap/2 {
		nf, _, err := s.rebuildFilter(ctx, c, 2*total)
		if err != nil {
			return err
		}
		imp.filter = nf
	}
	return nil
}

// writeRows writes keys[i] = vals[i] in one write batch.
func writeRows(db *badger.DB, keys, vals [][]byte) error {
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	for i := range keys {
		if err := wb.Set(keys[i], vals[i]); err != nil {
			return classify("write batch", err)
		}
	}
	return classify("write batch", wb.Flush())
}

// has reports whether a membership value already names this breach.
func (imp *importTx) has(val []byte) bool {
	for i := 0; i+4 <= len(val); i += 4 {
		if imp.mine[binary.BigEndian.Uint32(val[i:])] {
			return true
		}
	}
	return false
}

// commit makes every row added so far visible at once, records the breach in
// the catalogue, bumps the corpus version and saves the filter.
func (imp *importTx) commit(ctx context.Context) (breachd.ImportStats, error) {
	if err := ctx.Err(); err != nil {
		return imp.stats, err
	}
	s := imp.s
	if err := s.acquire(); err != nil {
		return imp.stats, err
	}
	defer s.release()

	if imp.isBulk {
		f, err := imp.commitBulk(ctx)
		if imp.index != nil {
			defer func() {
				if imp.index != nil {
					imp.index.abort() // not installed: the commit failed
				}
			}()
		}
		if err != nil {
			return imp.stats, err
		}
		imp.filter = f
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
	// Saved before the commit at the version it makes (see saveFilterAt):
	// a crash on either side of the commit leaves a valid filter.
	newFilter, newKeys := s.filter.Load(), s.keys.Load()+imp.stats.NewAccounts
	if imp.filter != nil {
		newFilter = imp.filter
	}
	if err := s.saveFilterAt(newFilter, version, newKeys); err != nil {
		s.log.Warn("saving bloom filter failed; it will be rebuilt at next start", "err", err)
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		br, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if err := setSegment(txn, imp.seg, imp.breach.Name, true); err != nil {
			return err
		}
		if imp.isBulk { // the bulk load wiped the store, its counter too
			if err := txn.Set(keyNextSegment, binary.BigEndian.AppendUint64(nil, bulkSegment+1)); err != nil {
				return err
			}
		}
		if err := txn.Set(breachKey(imp.breach.Name), br); err != nil {
			return err
		}
		if err := txn.Set(keyImportVersion, binary.BigEndian.AppendUint64(nil, version)); err != nil {
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
	// Publish: the filter first, so that a lookup that sees the new
	// catalogue also sees the new digests.
	if imp.filter != nil {
		s.filter.Store(imp.filter)
	}
	s.keys.Add(imp.stats.NewAccounts)
	breaches := maps.Clone(old.byName)
	breaches[rec.Name] = &breachd.CatalogEntry{Breach: rec.Breach, AccountCount: rec.AccountCount}
	segs := maps.Clone(old.segNames)
	segs[imp.seg] = rec.Name
	nc := newCatalog(version, version, breaches, segs)
	s.cat.Store(nc)
	if imp.index != nil && imp.index.finish(version) == nil {
		x, err := imp.index.install()
		imp.index = nil
		if err == nil && !s.publishIndex(x) {
			unmapFile(x.mapped)
		}
	}
	s.refreshView(context.Background(), nc)
	imp.stats.Version = version
	s.log.Info("import committed", "breach", rec.Name, "received", imp.stats.Received,
		"new_accounts", imp.stats.NewAccounts, "known_accounts", imp.stats.KnownAccounts,
		"duplicates", imp.stats.Duplicates, "corpus_version", version, "duration", time.Since(imp.started))
	return imp.stats, nil
}
