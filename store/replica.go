package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/pb"
	"google.golang.org/protobuf/proto"

	"github.com/breachd/breachd"
)

// Replication ships the corpus as Badger backups: a snapshot is a backup
// of everything, a delta a backup of what changed since the last one (rows,
// catalogue records and deletions, each with the version Badger gave it on
// the writer). A replica loads them with those versions, so applying one
// twice changes nothing, and it never writes corpus rows of its own
// (Options.Follower), so none of the writer's can be shadowed.
//
// A delta holds only what Badger still has: compaction drops a deleted
// key's marker once no reader needs it. So a delete that must reach the
// replicas is never a Badger delete alone: catalogue records are replaced
// by deletion markers (DeleteBreach), and the writer holds compaction back
// to the last delta's start (hold) for the rows collections delete.

// BackupInfo describes a backup written by Backup.
type BackupInfo struct {
	// It holds the entries of Badger versions above Since, up to Upto:
	// Upto is the Since of the next delta. (Badger's stream reads only
	// versions above its SinceTs, whatever Backup's documentation says of
	// adding one.)
	Since, Upto uint64
	// Version is the corpus version it brings a replica to.
	Version uint64
	// Keys is the number of committed accounts at that version: a replica
	// sizes its filter from it.
	Keys uint64
}

// Backup writes to w what changed in Badger after version since (0: a
// snapshot of everything). It holds off commits while it runs, so that the
// backup matches one corpus version, but not the imports, collections and
// index builds around them: rows of an import not yet committed, or a
// collection's rewrites, change no answer at that version, and a replica
// holds them as the writer does. (A first import, which may wipe Badger,
// runs only at version 0, which has nothing to back up.)
func (c *corpus) Backup(ctx context.Context, w io.Writer, since uint64) (BackupInfo, error) {
	if err := c.acquire(); err != nil {
		return BackupInfo{}, err
	}
	defer c.release()
	c.commitMu.RLock()
	defer c.commitMu.RUnlock()
	if err := ctx.Err(); err != nil {
		return BackupInfo{}, err
	}
	info := BackupInfo{Since: since, Version: c.cat.Load().version, Keys: c.keys.Load()}
	if info.Version == 0 {
		return BackupInfo{}, breachd.Errorf(breachd.ErrFailedPrecondition, "the %s corpus has no committed version to back up yet", c.kind.name)
	}
	// Badger's stream reads its key ranges in several transactions begun
	// one after another, so an import writing beside it (the publisher
	// does not wait for imports) can land a row in a range read early
	// with a version below one streamed from a range read late: the
	// highest version streamed is no bound on what the next delta may
	// skip (the chaos harness lost 79 rows of an import so). Every range
	// is read at or after safe, so every version up to it was streamed:
	// the next delta starts there, and sends again what came after it
	// (applied twice, a backup changes nothing).
	pin := c.db.NewTransaction(false)
	safe := pin.ReadTs()
	if _, err := backupStream(c.db, since).Backup(w, since); err != nil {
		pin.Discard()
		return BackupInfo{}, classify("backup", err)
	}
	if since == 0 {
		// A snapshot carries the base's rows too (base.go).
		if err := c.backupBase(ctx, w); err != nil {
			pin.Discard()
			return BackupInfo{}, classify("backup", err)
		}
	}
	c.hold(pin, since > 0)
	c.reach("backup-streamed")
	if c.readOnly == nil {
		// The next delta streams the versions above Upto. After a
		// restart, Badger hands out versions from the highest it finds;
		// had compaction dropped every entry of the commits up to Upto
		// (a collection's last commit deletes only), the first commits
		// after it would reuse versions at or below Upto, and no delta
		// would carry them. This set, synced before Upto is handed out,
		// keeps a version above Upto for good.
		err := c.db.Update(func(txn *badger.Txn) error {
			return txn.Set(keyShipped, binary.BigEndian.AppendUint64(nil, safe))
		})
		if err == nil {
			err = c.db.Sync()
		}
		if err != nil {
			return BackupInfo{}, classify("backup", err)
		}
		c.reach("backup-shipped")
	}
	info.Upto = max(safe, since)
	return info, nil
}

// backupStream is DB.Backup's stream with fewer goroutines. Each of
// Badger's stream goroutines takes a 32 MiB buffer, and so does each key
// range it reads (a corpus has some dozens): with the default 8, a delta
// of ten rows allocated 545 MB and took 23-35 ms on 2 cores, against 68 MB
// and 6-13 ms with one (BenchmarkBackup), and a writer's heap grew by up to
// the buffers in flight. A delta reads on one goroutine; a snapshot, which
// reads the whole corpus, on up to 8 (on 2 cores, a 2M-row snapshot took
// 3.4 s on one, 2.1-2.3 s on two and 2.2-2.8 s on eight).
func backupStream(db *badger.DB, since uint64) *badger.Stream {
	st := db.NewStream()
	st.LogPrefix, st.SinceTs = "DB.Backup", since
	st.NumGo = 1
	if since == 0 {
		st.NumGo = min(8, runtime.GOMAXPROCS(0))
	}
	return st
}

// hold keeps read transaction pin open until the next delta Backup, so
// that the next delta finds every change after pin's read timestamp (its
// Upto), deletions included. Badger's compactions drop a deleted key's
// marker, and every version below it, once no reader needs them and no
// lower level holds the key: a delete compacted away before the next
// delta streamed would never reach a replica, which went on answering a
// deleted breach. An open read transaction is the bound compactions
// respect (in a writer's Badger, versions are discarded only up to the
// oldest open read). The cost: versions overwritten since the last delta
// stay on disk until the next one.
//
// A delta (advance) moves the hold to pin; a snapshot (since 0) takes it
// only if there is none, since a publisher's refresh snapshot sits beside
// a delta chain whose next delta starts from the last delta's Upto, not
// from the snapshot's.
func (c *corpus) hold(pin *badger.Txn, advance bool) {
	c.heldMu.Lock()
	defer c.heldMu.Unlock()
	if c.held != nil && !advance {
		pin.Discard()
		return
	}
	if c.held != nil {
		c.held.Discard()
	}
	c.held = pin
}

// dropHold discards the hold, if any: before a bulk load, whose Badger
// StreamWriter replaces the clock an open transaction would report to
// when discarded (Badger stops the process then). A bulk load is a first
// import: nothing was published yet, so there is nothing to hold for.
func (c *corpus) dropHold() {
	c.heldMu.Lock()
	defer c.heldMu.Unlock()
	if c.held != nil {
		c.held.Discard()
		c.held = nil
	}
}

// ApplyBackup loads a snapshot or delta written by a writer's Backup and
// makes it visible all at once, as a local import commits: its rows are
// written first (invisible until the catalogue names their segments), the
// filter gains every key among them, and the new catalogue is published
// last. expectedKeys, from BackupInfo.Keys, sizes the filter of an empty
// corpus and becomes the replica's count of keys. It returns the corpus version now served.
//
// If the process dies part way, the corpus may hold part of the backup;
// applying the same backup again completes it (every entry carries its
// writer's version), which is what the follower does before it serves.
func (c *corpus) ApplyBackup(ctx context.Context, r io.Reader, expectedKeys uint64) (uint64, error) {
	if !c.opts.Follower {
		return 0, breachd.Errorf(breachd.ErrFailedPrecondition, "this %s corpus is not a replica's: it takes imports, not backups", c.kind.name)
	}
	done, err := c.takeToken(ctx, "backup")
	if err != nil {
		return 0, err
	}
	defer done()
	if err := c.acquire(); err != nil {
		return 0, err
	}
	defer c.release()
	start := time.Now()
	old, oldFilter := c.cat.Load(), c.filter.Load()
	f, live := growing(oldFilter, old.version == 0, expectedKeys, c.opts.FalsePositiveRate)
	applied := false
	var rows, fresh uint64
	if live {
		defer func() {
			if !applied {
				c.strays.Add(fresh) // in the published filter, never committed
			}
		}()
	}
	size := 1 + c.kind.keySize
	// The rows the backup changes, for the lookup index: the newest
	// version of each, nil where it deletes the row; merged into the view
	// (mergeDelta), or past a view's delta bound spilled to runs and
	// merged with the index file by the next build (changes.go). Only a
	// view current for the catalogue before takes them: a first
	// snapshot's (every row of the corpus) would be held in memory for
	// nothing.
	var kept *keptRows
	if c.index != nil && !c.kind.counted && c.viewCurrentFor(old) {
		kept = newKeptRows(c, c.maxDeltaRows(c.keys.Load()), true)
	}
	defer kept.drop()    // what was not handed over
	rowsChanged := false // a counted kind's index is rebuilt if any row changed
	// A snapshot writes the writer's base rows (a password corpus's first
	// release) to a base of the replica's own, as the writer holds them,
	// instead of Badger's rows: about 21 bytes a hash instead of 73,
	// written in order instead of through Badger's memtables. Only
	// snapshots carry them, and a replica applies one only before its
	// first delta (again, if it was killed part way): it has no base then,
	// and no Badger row of the base's. (Deltas pay for the filtering too:
	// their lists are written again for Load.)
	var bw *baseWriter
	if c.kind.counted && !c.hasBase() {
		bw = &baseWriter{c: c, expected: expectedKeys}
	}
	err = loadBackup(ctx, c.db, r, bw != nil, func(kv *pb.KV) (load bool) {
		if len(kv.Key) != size || kv.Key[0] != c.kind.tag {
			return true
		}
		load = bw == nil || !bw.offer(kv)
		rowsChanged = true
		if kept != nil {
			var val []byte
			if !deleted(kv) {
				val = bytes.Clone(kv.Value)
			}
			kept.add(breachd.Digest(kv.Key[1:]), val, kv.Version)
		}
		if deleted(kv) {
			return
		}
		rows++
		fk := c.kind.filterKey(kv.Key[1:])
		if !oldFilter.test(fk[:]) {
			fresh++ // surely new; the few the old filter lets through are not counted
		}
		f.put(fk[:], live)
		return load
	})
	if err == nil && bw != nil {
		err = bw.err
	}
	if err != nil {
		bw.abort()
		return 0, err
	}
	if err := c.db.Sync(); err != nil {
		bw.abort()
		return 0, classify("apply backup", err)
	}
	// In place once Badger holds the rest of the snapshot (keyBase with
	// it): a base file is a whole one.
	if bw != nil {
		reach("replica-rows-loaded")
		if err := bw.install(); err != nil {
			return 0, err
		}
	}
	cat, err := c.readCatalog()
	if err == nil {
		// The writer's keying, now in Badger, must be this replica's:
		// otherwise every lookup would miss. Refused before it serves.
		err = c.checkIndexKey(cat.version)
	}
	if err != nil {
		return 0, err
	}
	keys := c.keys.Load() + fresh
	if expectedKeys > 0 {
		// The writer's count at this version: exact, deletes and
		// abandoned imports' rows included, where fresh only adds.
		keys = expectedKeys
	}
	if keys+c.strays.Load() > f.cap+f.cap/2 {
		if f, _, err = c.rebuildFilter(ctx, cat, 2*keys); err != nil {
			return 0, err
		}
	}
	c.saveFilterBeforeCommit(f, cat.version, keys)
	// Publish: the filter first, so that a lookup that sees the new
	// catalogue also sees the new keys.
	applied = true
	if c.filter.Swap(f) != f {
		c.strays.Store(0) // a new filter
	}
	c.keys.Store(keys)
	c.privateRemoving(c.cat.Load(), cat)
	c.cat.Store(cat) // its readTs covers every entry loaded: the delta is visible at once
	if c.hasBase() {
		// The writer deleted its base with the base's release (the delete
		// came in an earlier delta or this one: no answer reads it now).
		recorded, err := c.hasKey(keyBase, "apply backup")
		if err == nil && !recorded {
			err = c.dropBase(true)
		}
		if err != nil {
			return 0, classify("apply backup", err)
		}
	}
	// Versions no reader needs any more may go at compaction: those the
	// catalogue before the last one pinned (a lookup that loaded it may
	// still be reading).
	if c.managed {
		c.db.SetDiscardTs(old.readTs)
	}
	if c.index != nil {
		// Not merged (no view for the catalogue before, rows not kept
		// for it, or a rebuild running): the index is rebuilt, never
		// reused, since this backup's rows may be of an import not yet
		// committed, which the delta that commits it will not bring
		// again. (Rows not kept must never reach mergeDelta, which takes
		// nil for a backup that changed none: a view that became
		// current for the catalogue before while the backup applied
		// would then answer without them.)
		var merged bool
		switch {
		case kept == nil: // a counted kind's, or no view at the start
			merged = !rowsChanged && c.mergeDelta(old, cat, nil)
		case kept.kept():
			spilled, n := kept.spilled(), len(kept.rows)
			merged = kept.handOver(c, old, cat)
			if merged && !spilled && n > 0 {
				// Merged: written into the file once deltas pause, so
				// that a restart loads the index instead of rebuilding
				// it from Badger.
				c.settleIndex()
			}
		}
		if !merged {
			c.dropIndexView(context.Background())
		}
	}
	c.announce()
	c.log.Info("backup applied", "rows", rows, "new_keys", fresh, "corpus_version", cat.version,
		"from_version", old.version, "duration", time.Since(start))
	return cat.version, nil
}

// growing returns the filter a backup is added to, and whether it is the
// published one (added to in place: live): the published one, or, for an
// empty corpus whose backup brings more keys than it was sized for, a new
// one sized for them.
func growing(published *filter, empty bool, expectedKeys uint64, fpr float64) (*filter, bool) {
	if empty && expectedKeys > published.cap {
		return newFilter(expectedKeys+expectedKeys/4, fpr), false
	}
	return published, true
}

// loadBackup loads a backup stream into db with Badger's Load, which
// writes the entries with their versions (and moves db's clock past
// them), calling fn for each entry from a second reader of the same bytes.
// With filter, only the entries fn says to load are loaded (fn sees them
// all): the stream is parsed once, and the lists Load reads are written
// again; without, fn's answer is ignored.
func loadBackup(ctx context.Context, db *badger.DB, r io.Reader, filter bool, fn func(*pb.KV) (load bool)) error {
	pr, pw := io.Pipe()
	parsed := make(chan error, 1)
	src := io.Reader(ctxReader{ctx, r})
	var in io.Reader           // what Load reads
	var stop func(error) error // told Load's outcome: stops the other side
	if !filter {
		go func() {
			err := eachList(pr, func(list *pb.KVList) error {
				for _, kv := range list.Kv {
					fn(kv)
				}
				return nil
			})
			io.Copy(io.Discard, pr) // let Load finish whatever happened
			parsed <- err
		}()
		in, stop = io.TeeReader(src, pw), pw.CloseWithError
	} else {
		go func() {
			var buf []byte
			err := eachList(src, func(list *pb.KVList) error {
				kept := list.Kv[:0]
				for _, kv := range list.Kv {
					if fn(kv) {
						kept = append(kept, kv)
					}
				}
				if len(kept) == 0 {
					return nil
				}
				list.Kv = kept
				var err error
				if buf, err = appendList(buf[:0], list); err != nil {
					return err
				}
				_, err = pw.Write(buf)
				return err
			})
			pw.CloseWithError(err) // nil: Load reads to the end
			parsed <- err
		}()
		in, stop = pr, pr.CloseWithError // the parser stops writing if Load stopped reading
	}
	err := db.Load(in, 16)
	stop(err)
	if perr := <-parsed; err == nil {
		err = perr
	}
	return classify("apply backup", err)
}

func deleted(kv *pb.KV) bool { return len(kv.Meta) > 0 && kv.Meta[0]&bitDelete != 0 }

// appendList appends list to buf as a backup stream holds it: its length
// (8 bytes, little-endian), then its encoding. eachList reads it.
func appendList(buf []byte, list *pb.KVList) ([]byte, error) {
	n := len(buf)
	buf, err := proto.MarshalOptions{}.MarshalAppend(binary.LittleEndian.AppendUint64(buf, 0), list)
	if err != nil {
		return nil, err
	}
	binary.LittleEndian.PutUint64(buf[n:], uint64(len(buf)-n-8))
	return buf, nil
}

// eachList calls fn for every list of entries of a backup stream: lists,
// each after its length (8 bytes, little-endian).
func eachList(r io.Reader, fn func(*pb.KVList) error) error {
	br := bufio.NewReaderSize(r, 1<<20)
	var buf []byte
	for {
		var size uint64
		if err := binary.Read(br, binary.LittleEndian, &size); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("%w: backup: %v", ErrCorrupt, err)
		}
		if size > 256<<20 {
			return fmt.Errorf("%w: backup: a list of %d bytes", ErrCorrupt, size)
		}
		if uint64(cap(buf)) < size {
			buf = make([]byte, size)
		}
		buf = buf[:size]
		if _, err := io.ReadFull(br, buf); err != nil {
			return fmt.Errorf("%w: backup: %v", ErrCorrupt, err)
		}
		var list pb.KVList
		if err := proto.Unmarshal(buf, &list); err != nil {
			return fmt.Errorf("%w: backup: %v", ErrCorrupt, err)
		}
		if err := fn(&list); err != nil {
			return err
		}
	}
}

// ctxReader fails its reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// bitDelete is Badger's mark of a deleted entry in a backup's Meta.
const bitDelete byte = 1 << 0
