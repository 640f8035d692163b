package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
	Private   uint64 // private rows removed: their accounts' rows are gone (private.go)
	// Misattributed lists the breaches that hold more accounts than their
	// imports counted (a full collection checks every breach): rows a
	// breach deleted before this release left behind, which an import
	// given the deleted breach's segment id made its own. Answers for
	// them are wrong: delete the breach and import it again.
	Misattributed []Misattribution
}

// Misattribution is a breach whose rows outnumber the accounts its imports
// counted.
type Misattribution struct {
	Breach  string
	Rows    uint64 // accounts that answer this breach
	Counted int64  // accounts its imports added (its catalogue count)
}

// Collect removes what no committed breach owns: the rows and segment
// records of interrupted imports, the rows of deleted breaches, and filter
// files left by a save that was interrupted. Answers do not change: none of
// it was visible. It reads every row, recounts the corpus and checks each
// breach's count (CollectStatc.Misattributed). It waits for a running
// import and holds off the next.
func (c *corpus) Collect(ctx context.Context) (CollectStats, error) {
	done, err := c.takeImportToken(ctx, "collection")
	if err != nil {
		return CollectStats{}, err
	}
	defer done()
	if err := c.acquire(); err != nil {
		return CollectStats{}, err
	}
	defer c.release()
	st, _, err := c.collect(ctx, nil, 0)
	return st, err
}

// collectOutstanding collects what is recorded as left to collect: a
// deleted breach's rows or a recount (a full scan), or only interrupted
// imports (a scan of what changed since the oldest of them began).
// Callers hold the import token and a call slot.
func (c *corpus) collectOutstanding(ctx context.Context) (CollectStats, error) {
	var since uint64
	full := c.recount
	err := c.db.View(func(txn *badger.Txn) error {
		if _, err := txn.Get(keyCollect); err == nil {
			full = true
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return scanRecords(txn, tagSegment, func(_, v []byte) error {
			var r segmentRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("%w: segment record: %v", ErrCorrupt, err)
			}
			if !r.Committed {
				if r.Since == 0 {
					full = true // recorded before Since was
				} else if since == 0 || r.Since < since {
					since = r.Since
				}
			}
			return nil
		})
	})
	if err != nil {
		return CollectStats{}, classify("collect", err)
	}
	if full {
		since = 0
	}
	st, _, err := c.collect(ctx, nil, since)
	if err == nil && full {
		c.recount = false
	}
	return st, err
}

// collect does Collect's work; callers hold the import token and a call
// slot. It also counts the removed rows that held a segment of gone (a
// breach just deleted): they were visible until then. With since > 0 it
// reads only the rows changed after Badger version since, which must be
// older than every pending import's rows: it collects those imports, and
// leaves the count and a deleted breach's older rows alone.
func (c *corpus) collect(ctx context.Context, gone map[uint32]bool, since uint64) (CollectStats, uint64, error) {
	start := time.Now()
	var st CollectStats
	cat := c.cat.Load()
	var pending [][]byte
	err := c.db.View(func(txn *badger.Txn) error {
		return scanRecords(txn, tagSegment, func(k, v []byte) error {
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
	wb := c.db.NewWriteBatch()
	defer wb.Cancel()
	var wasVisible, committed uint64 // rows removed that were visible until now; rows a committed breach holds
	perBreach := map[string]uint64{} // rows answering each breach (a full scan)
	var seen []string
	n := c.kind.entrySize()
	err = c.eachKey(ctx, cat, since, func(key, v []byte, item *badger.Item) error {
		c.reach("collect-row")
		var kept []byte
		var dropped, hadGone bool
		seen = seen[:0]
		for j := 0; j < len(v); j += n {
			id := binary.BigEndian.Uint32(v[j:])
			if name, ok := cat.segNames[id]; ok {
				kept = append(kept, v[j:j+n]...)
				if since == 0 && !slices.Contains(seen, name) {
					seen = append(seen, name)
					perBreach[name]++
				}
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
		if len(kept) == 0 {
			st.Deleted++
			if hadGone {
				wasVisible++
			}
		} else {
			st.Rewritten++
		}
		if item == nil {
			return nil // the base's, whose release is deleted: the file goes below
		}
		k := item.KeyCopy(nil)
		if len(kept) == 0 {
			return wb.Delete(k)
		}
		return wb.Set(k, kept)
	})
	// A base whose release is deleted goes once its rows are rewritten:
	// the record with them, the file after (a file without the record is
	// removed at open).
	dropBase := since == 0 && c.base.Load() != nil && cat.segNames[bulkSegment] == ""
	if err == nil && dropBase {
		err = wb.Delete(keyBase)
	}
	if err == nil {
		for _, k := range pending {
			if err = wb.Delete(k); err != nil {
				break
			}
		}
	}
	if err == nil && since == 0 {
		err = wb.Delete(keyCollect)
	}
	if err == nil {
		err = wb.Flush()
	}
	if err == nil {
		err = c.db.Sync()
	}
	if err == nil && dropBase {
		c.reach("base-unrecorded")
		err = c.dropBase(true)
	}
	if err != nil {
		return st, 0, classify("collect", err)
	}
	if st.Private, err = c.collectPrivate(ctx, since); err != nil {
		return st, 0, err
	}
	st.Segments = len(pending)
	if since == 0 {
		// The scan saw every row with imports held off: the count of
		// committed accounts is exact now, whatever an interrupted delete
		// left behind; and each breach's rows can be checked against what
		// its imports counted. (Password corpora, which had no deletes,
		// kept one entry per row until the engine: their rows are not
		// counted per release.)
		c.keys.Store(committed)
		for _, b := range cat.sorted {
			if c.kind.counted {
				break
			}
			if n := perBreach[b.Name]; n != uint64(max(b.AccountCount, 0)) {
				st.Misattributed = append(st.Misattributed, Misattribution{Breach: b.Name, Rows: n, Counted: b.AccountCount})
				c.log.Error("a breach answers for another number of accounts than its imports counted: rows of a breach deleted before this release may answer under it; delete it and import it again",
					"breach", b.Name, "rows", n, "counted", b.AccountCount)
			}
		}
	}
	st.TempFiles = c.removeTemps()
	if st.Segments+st.TempFiles > 0 || st.Rewritten+st.Deleted+st.Private > 0 {
		c.log.Info("collected", "segments", st.Segments, "rewritten", st.Rewritten, "deleted", st.Deleted,
			"private", st.Private, "temp_files", st.TempFiles, "full", since == 0, "duration", time.Since(start))
	}
	return st, wasVisible, nil
}

// removeTemps removes the temporary files that crashes left, and returns
// how many. Callers hold the import token, so no import owns any of them;
// an index build may be running beside, and its file is spared.
func (c *corpus) removeTemps() int {
	writing := c.writingIndex()
	tmps, _ := filepath.Glob(filepath.Join(c.dir, filterFile+".tmp*"))
	idxTmps, _ := filepath.Glob(filepath.Join(c.dir, indexFile+".tmp*"))
	baseTmps, _ := filepath.Glob(filepath.Join(c.dir, baseFile+".tmp*"))
	tmps = append(append(tmps, idxTmps...), baseTmps...)
	tmps = append(tmps, staleSpills(c.dir)...)
	n := 0
	for _, p := range tmps {
		if p != writing && os.Remove(p) == nil {
			n++
		}
	}
	return n
}

// needsCollect reports whether Open found something to collect: records of
// interrupted imports (seen while loading the catalogue), an unfinished
// delete, or a count to redo. (Open removes leftover files itself.)
func (c *corpus) needsCollect() bool {
	if c.pendingAtOpen || (c.recount && c.cat.Load().version > 0) {
		return true
	}
	err := c.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(keyCollect)
		return err
	})
	return err == nil
}

// DeleteBreach removes breach (or release) name from every answer at once,
// then deletes the rows no committed breach holds any more. It returns the
// keys that are no longer in any breach, and the new corpus version.
func (c *corpus) DeleteBreach(ctx context.Context, name string) (removed, version uint64, err error) {
	done, err := c.takeImportToken(ctx, "delete of "+name)
	if err != nil {
		return 0, 0, err
	}
	handed := false
	defer func() {
		if !handed {
			done()
		}
	}()
	if err := c.acquire(); err != nil {
		return 0, 0, err
	}
	defer c.release()
	old := c.cat.Load()
	if old.byName[name] == nil {
		return 0, old.version, fmt.Errorf("%w %s", breachd.ErrUnknownBreach, breachd.Quote(name))
	}
	gone := map[uint32]bool{}
	for id, n := range old.segNames {
		if n == name {
			gone[id] = true
		}
	}
	version = old.version + 1
	c.saveFilterBeforeCommit(c.filter.Load(), version, c.keys.Load())
	c.commitMu.Lock()
	err = c.db.Update(func(txn *badger.Txn) error {
		// Deletion markers (empty values), not deletes: Badger's
		// compaction may drop a deleted key's marker, and the versions
		// below it, before a delta streams it (a writer that restarts
		// holds nothing from before it opened: see corpus.hold), and a
		// replica that never learns of the delete answers the breach for
		// good. A value is never dropped while it is the newest. Segment
		// ids are never reused, so the markers stay.
		for id := range gone {
			if err := txn.Set(segmentKey(id), nil); err != nil {
				return err
			}
		}
		if err := txn.Set(breachKey(name), nil); err != nil {
			return err
		}
		if err := txn.Set(keyCollect, []byte{1}); err != nil {
			return err
		}
		return txn.Set(keyVersion, binary.BigEndian.AppendUint64(nil, version))
	})
	if err == nil {
		err = c.db.Sync()
	}
	if err != nil {
		c.commitMu.Unlock()
		return 0, old.version, classify("delete breach", err)
	}
	nc := old.with(version, old.importVersion, name, nil, 0)
	c.privateRemoving(old, nc)
	c.cat.Store(nc) // the breach is gone from every answer from here
	c.commitMu.Unlock()
	c.announce() // replicas need not wait for the index
	c.refreshView(ctx, nc)
	c.log.Info("breach deleted", "breach", name, "corpus_version", version)
	c.reach("delete-committed")
	// The rows are collected by the store, not by the caller: a caller
	// that stops waiting (a client's Ctrl-C) leaves it running, and the
	// next change waits for it. The filter was saved at this version
	// before the commit (it is unchanged: a superset is always right), so
	// a crash during the collection does not force a rebuild; the marker
	// makes the next open collect (and recount) instead.
	handed = true
	result := make(chan uint64, 1)
	collected := c.handOff(done, "collecting a deleted breach's rows", func(ctx context.Context) error {
		_, removed, err := c.collect(ctx, gone, 0)
		if err != nil {
			return err
		}
		result <- removed
		if err := c.saveFilter(); err != nil { // with the exact count
			c.log.Warn("saving bloom filter failed; it will be rebuilt at next start", "err", err)
		}
		return nil
	})
	select {
	case err := <-collected:
		if err != nil {
			return 0, version, nil // the breach is gone; its rows are collected later
		}
		return <-result, version, nil
	case <-ctx.Done():
		c.log.Info("the caller of a delete stopped waiting; the deleted breach's rows are collected meanwhile", "breach", name)
		return 0, version, nil
	}
}

// UpdateBreach replaces the catalogue entry of a breach already in the
// corpus (its account count stays; a zero AddedDate keeps the old one).
func (c *corpus) UpdateBreach(ctx context.Context, b breachd.Breach) (*breachd.CatalogEntry, uint64, error) {
	if err := b.Validate(); err != nil {
		return nil, 0, err
	}
	done, err := c.takeImportToken(ctx, "correction of "+b.Name)
	if err != nil {
		return nil, 0, err
	}
	defer done()
	if err := c.acquire(); err != nil {
		return nil, 0, err
	}
	defer c.release()
	old := c.cat.Load()
	prev := old.byName[b.Name]
	if prev == nil {
		return nil, old.version, fmt.Errorf("%w %s: import it first", breachd.ErrUnknownBreach, breachd.Quote(b.Name))
	}
	if b.AddedDate.IsZero() {
		b.AddedDate = prev.AddedDate
	}
	if b.ModifiedDate.IsZero() { // a correction is a modification (upstream's ModifiedDate)
		b.ModifiedDate = time.Now().UTC().Truncate(time.Second)
	}
	b.Pairs = prev.Pairs // a correction changes the record, not what the breach holds
	rec := newBreachRecord(b, prev.AccountCount)
	version := old.version + 1
	c.saveFilterBeforeCommit(c.filter.Load(), version, c.keys.Load())
	c.commitMu.Lock()
	err = c.db.Update(func(txn *badger.Txn) error {
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
		err = c.db.Sync()
	}
	if err != nil {
		c.commitMu.Unlock()
		return nil, old.version, classify("update breach", err)
	}
	e := &breachd.CatalogEntry{Breach: rec.Breach, AccountCount: rec.AccountCount}
	nc := old.with(version, old.importVersion, b.Name, e, 0)
	c.cat.Store(nc)
	c.commitMu.Unlock()
	c.announce() // replicas need not wait for the index
	c.refreshView(ctx, nc)
	c.log.Info("breach updated", "breach", b.Name, "corpus_version", version)
	return e, version, nil
}
