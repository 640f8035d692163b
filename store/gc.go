package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/breachd/breachd"
)

// keyCollect marks that rows of deleted breaches may remain to collect: a
// crash between a delete's commit and its collection leaves it set.
var keyCollect = []byte("mcollect_pending")

// CollectStats counts what Collect removed.
type CollectStats struct {
	Segments  int    // records of interrupted imports removed
	Rewritten uint64 // rows that lost segment ids no committed breach owns
	Deleted   uint64 // rows removed: no committed breach holds them any more
	TempFiles int    // leftover filter files removed
}

// Collect removes what no committed breach owns: the rows and segment
// records of interrupted imports, the rows of deleted breaches, and filter
// files left by a save that was interrupted. Answers do not change: none of
// it was visible. It waits for a running import and holds off the next.
func (s *Store) Collect(ctx context.Context) (CollectStats, error) {
	done, err := s.takeImportToken(ctx)
	if err != nil {
		return CollectStats{}, err
	}
	defer done()
	if err := s.acquire(); err != nil {
		return CollectStats{}, err
	}
	defer s.release()
	st, _, err := s.collect(ctx, nil)
	return st, err
}

// collect does Collect's work; callers hold the import token and a call
// slot. It also counts the removed rows that held a segment of gone (a
// breach just deleted): they were visible until then.
func (s *Store) collect(ctx context.Context, gone map[uint32]bool) (CollectStats, uint64, error) {
	start := time.Now()
	var st CollectStats
	c := s.cat.Load()
	var pending [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		return scan(txn, tagSegment, func(k, v []byte) error {
			var r segmentRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("%w: segment record: %v", ErrCorrupt, err)
			}
			if !r.Committed {
				pending = append(pending, append([]byte(nil), k...))
			}
			return nil
		})
	})
	if err != nil {
		return st, 0, classify("collect", err)
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	var wasVisible, committed uint64 // rows removed that were visible until now; rows a committed breach holds
	err = s.eachDigest(ctx, func(item *badger.Item, v []byte) error {
		if len(v)%4 != 0 {
			return fmt.Errorf("%w: membership value of %d bytes", ErrCorrupt, len(v))
		}
		var kept []byte
		var dropped, hadGone bool
		for j := 0; j < len(v); j += 4 {
			id := binary.BigEndian.Uint32(v[j:])
			if _, ok := c.segNames[id]; ok {
				kept = binary.BigEndian.AppendUint32(kept, id)
				continue
			}
			dropped = true
			hadGone = hadGone || gone[id]
		}
		if len(kept) > 0 {
			committed++
		}
		if !dropped {
			return nil
		}
		k := item.KeyCopy(nil)
		if len(kept) == 0 {
			st.Deleted++
			if hadGone {
				wasVisible++
			}
			return wb.Delete(k)
		}
		st.Rewritten++
		return wb.Set(k, kept)
	})
	if err == nil {
		for _, k := range pending {
			if err = wb.Delete(k); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = wb.Delete(keyCollect)
	}
	if err == nil {
		err = wb.Flush()
	}
	if err == nil {
		err = s.db.Sync()
	}
	if err != nil {
		return st, 0, classify("collect", err)
	}
	st.Segments = len(pending)
	// The scan saw every row with imports held off: the count of committed
	// accounts is exact now, whatever an interrupted delete left behind.
	s.keys.Store(committed)
	st.TempFiles = s.removeTemps()
	if st != (CollectStats{}) {
		s.log.Info("collected", "segments", st.Segments, "rewritten", st.Rewritten, "deleted", st.Deleted,
			"temp_files", st.TempFiles, "duration", time.Since(start))
	}
	return st, wasVisible, nil
}

// removeTemps removes the temporary files that crashes left, and returns
// how many. Callers hold the import token, so no import owns any of them;
// an index build may be running beside, and its file is spared.
func (s *Store) removeTemps() int {
	s.tmpMu.Lock()
	defer s.tmpMu.Unlock()
	tmps, _ := filepath.Glob(filepath.Join(s.dir, filterFile+".tmp*"))
	idxTmps, _ := filepath.Glob(filepath.Join(s.dir, indexFile+".tmp*"))
	tmps = append(tmps, idxTmps...)
	tmps = append(tmps, staleSpills(s.dir)...)
	n := 0
	for _, p := range tmps {
		if !s.writingTmps[p] && os.Remove(p) == nil {
			n++
		}
	}
	return n
}

// needsCollect reports whether Open found something to collect: records of
// interrupted imports (seen while loading the catalogue), an unfinished
// delete, a count to redo, or leftover files.
func (s *Store) needsCollect() bool {
	if s.pendingAtOpen || (s.recount && s.cat.Load().version > 0) {
		return true
	}
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(keyCollect)
		return err
	})
	tmps, _ := filepath.Glob(filepath.Join(s.dir, filterFile+".tmp*"))
	idxTmps, _ := filepath.Glob(filepath.Join(s.dir, indexFile+".tmp*"))
	return err == nil || len(tmps)+len(idxTmps) > 0 || len(staleSpills(s.dir)) > 0
}

// DeleteBreach removes breach name from every answer at once, then deletes
// the rows no committed breach holds any more. It returns the accounts that
// are no longer in any breach, and the new corpus version.
func (s *Store) DeleteBreach(ctx context.Context, name string) (removed, version uint64, err error) {
	done, err := s.takeImportToken(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer done()
	if err := s.acquire(); err != nil {
		return 0, 0, err
	}
	defer s.release()
	old := s.cat.Load()
	if old.byName[name] == nil {
		return 0, old.version, fmt.Errorf("%w %s", breachd.ErrUnknownBreach, breachd.Quote(name))
	}
	gone := map[uint32]bool{}
	segs := maps.Clone(old.segNames)
	for id, n := range old.segNames {
		if n == name {
			gone[id] = true
			delete(segs, id)
		}
	}
	version = old.version + 1
	if err := s.saveFilterAt(s.filter.Load(), version, s.keys.Load()); err != nil {
		s.log.Warn("saving bloom filter failed; it will be rebuilt at next start", "err", err)
	}
	err = s.db.Update(func(txn *badger.Txn) error {
		for id := range gone {
			if err := txn.Delete(segmentKey(id)); err != nil {
				return err
			}
		}
		if err := txn.Delete(breachKey(name)); err != nil {
			return err
		}
		if err := txn.Set(keyCollect, []byte{1}); err != nil {
			return err
		}
		return txn.Set(keyVersion, binary.BigEndian.AppendUint64(nil, version))
	})
	if err == nil {
		err = s.db.Sync()
	}
	if err != nil {
		return 0, old.version, classify("delete breach", err)
	}
	breaches := maps.Clone(old.byName)
	delete(breaches, name)
	nc := newCatalog(version, old.importVersion, breaches, segs)
	s.cat.Store(nc) // the breach is gone from every answer from here
	s.refreshView(ctx, nc)
	s.log.Info("breach deleted", "breach", name, "corpus_version", version)
	// The filter was saved at this version before the commit (it is
	// unchanged: a superset is always right), so a crash during the
	// collection below does not force a rebuild; the collection the marker
	// starts at the next open recounts.
	_, removed, err = s.collect(ctx, gone)
	if err != nil {
		// The breach is gone already; its rows are collected at the next start.
		s.log.Warn("collecting a deleted breach's rows failed; they are invisible and will be collected at the next start", "breach", name, "err", err)
		return 0, version, nil
	}
	if err := s.saveFilter(); err != nil { // with the exact count
		s.log.Warn("saving bloom filter failed; it will be rebuilt at next start", "err", err)
	}
	return removed, version, nil
}

// UpdateBreach replaces the catalogue entry of a breach already in the
// corpus (its account count stays; a zero AddedDate keeps the old one).
func (s *Store) UpdateBreach(ctx context.Context, b breachd.Breach) (*breachd.CatalogEntry, uint64, error) {
	if err := b.Validate(); err != nil {
		return nil, 0, err
	}
	done, err := s.takeImportToken(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer done()
	if err := s.acquire(); err != nil {
		return nil, 0, err
	}
	defer s.release()
	old := s.cat.Load()
	prev := old.byName[b.Name]
	if prev == nil {
		return nil, old.version, fmt.Errorf("%w %s: import it first", breachd.ErrUnknownBreach, breachd.Quote(b.Name))
	}
	if b.AddedDate.IsZero() {
		b.AddedDate = prev.AddedDate
	}
	rec := breachRecord{Breach: b, AccountCount: prev.AccountCount}
	version := old.version + 1
	if err := s.saveFilterAt(s.filter.Load(), version, s.keys.Load()); err != nil {
		s.log.Warn("saving bloom filter failed; it will be rebuilt at next start", "err", err)
	}
	err = s.db.Update(func(txn *badger.Txn) error {
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if err := txn.Set(breachKey(b.Name), v); err != nil {
			return err
		}
		return txn.Set(keyVersion, binary.BigEndian.AppendUint64(nil, version))
	})
	if err == nil {
		err = s.db.Sync()
	}
	if err != nil {
		return nil, old.version, classify("update breach", err)
	}
	e := &breachd.CatalogEntry{Breach: rec.Breach, AccountCount: rec.AccountCount}
	breaches := maps.Clone(old.byName)
	breaches[b.Name] = e
	nc := newCatalog(version, old.importVersion, breaches, old.segNames)
	s.cat.Store(nc)
	s.refreshView(ctx, nc)
	s.log.Info("breach updated", "breach", b.Name, "corpus_version", version)
	return e, version, nil
}
