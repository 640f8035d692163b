package store

import (
	"bytes"
	"context"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/ristretto/v2/z"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/breachd/breachd"
)

// The first import into a corpus is a bulk load: its rows are written
// straight into sorted tables with Badger's StreamWriter, with no memtable,
// write-ahead log or compaction on the way (the 1.29M Sega Pass digests in
// about 1.5 s instead of 3.5 s). A corpus with no committed import has never
// answered "exposed", so the StreamWriter's Prepare may wipe it: that also
// clears the rows of an earlier first import that crashed or was abandoned.
// Lookups meanwhile never touch Badger: an empty catalogue answers first.
//
// How the keys reach the StreamWriter is the kind's (kind.bulk):
//   - bulkSpill buffers them, spills sorted runs to files every
//     Options.BulkChunkDigests keys (spill.go), and at the commit merges the
//     runs into the tables, and the lookup index in the same pass. Past
//     Options.MaxBulkDigests buffered keys it leaves the bulk load for write
//     batches: memory stays bounded, the corpus is the same.
//   - bulkStream (password hashes) writes no Badger rows: each batch goes to
//     the corpus's base (base.go), a counted index file, while the keys come
//     in ascending order; the first batch out of order puts the base in
//     place and the rest goes through write batches, which merge with it.

// A bulk load's rows are one stream of the StreamWriter, all at Badger
// version 1.
const (
	bulkVersion  = 1
	bulkStreamID = 1
)

// bulkBatch is how many rows go to the StreamWriter per buffer.
const bulkBatch = 1 << 16

// pageOutEvery is how many buffers go to the StreamWriter between two
// calls of pageOutTables: about 30 MB of tables. A bulk load's memory is
// then its sorting and buffers, not the tables it wrote (at 100M digests,
// 5.2 GiB of mapped table pages otherwise).
const pageOutEvery = 8

type bulkLoad struct {
	mode bulkMode
	// spill mode: the buffered records and the sorted runs (spill.go)
	runs runs
	// stream mode, and spill mode's commit: the writer
	sw      *badger.StreamWriter
	buf     *z.Buffer
	inBuf   int    // rows in buf
	flushes int    // buffers written
	last    []byte // the last key streamed
	key     []byte // scratch for write
	val     []byte
	// The StreamWriter takes full buffers on a goroutine of its own, so
	// that it decodes and writes one buffer while the import fills the
	// next: toWriter carries them, written reports each's error.
	toWriter chan *z.Buffer
	written  chan error
	inFlight bool // a buffer is with the writer goroutine
	// index is the lookup index written in the same pass (an indexed
	// kind's spilled load's merge); installed once the commit is written.
	index *indexWriter
	// base is a stream's base (base.go), written as the keys come;
	// baseDone once renamed into place, the index's first version then.
	base     *indexWriter
	baseDone bool
	// side holds the import's side rows until its tables are written
	// (finishWriter), or until it leaves for write batches.
	side sideSpill
}

// beginBulk starts the bulk load of imp, the first import into c.
func (c *corpus) beginBulk(imp *importTx, expected uint64) (*bulkLoad, error) {
	imp.seg = bulkSegment
	imp.mine[bulkSegment] = true
	bl := &bulkLoad{mode: c.kind.bulk, runs: newRuns(c.dir, c.kind)}
	if bl.mode == bulkStream {
		// The stream writes the base (base.go), not Badger's rows; the
		// corpus is wiped as the StreamWriter's Prepare would.
		c.dropHold()
		if err := c.dropBase(false); err != nil {
			return nil, err
		}
		if err := c.db.DropAll(); err != nil {
			return nil, classify("prepare bulk load", err)
		}
		imp.wiped = true
		f := newFilter(max(c.opts.ExpectedKeys, expected+expected/4), c.opts.FalsePositiveRate)
		imp.filter = f
		w, err := newIndexFileWriter(c.dir, baseFile, c.kind, expected, []uint32{bulkSegment})
		if err != nil {
			return nil, classify("prepare bulk load", err)
		}
		bl.base = w
	}
	return bl, nil
}

func (bl *bulkLoad) startWriter(c *corpus) error {
	c.dropHold()
	sw := c.db.NewStreamWriter()
	if err := sw.Prepare(); err != nil {
		return classify("prepare bulk load", err)
	}
	bl.sw, bl.buf = sw, z.NewBuffer(bulkBatch*64, "breachd.bulk")
	in, out := make(chan *z.Buffer), make(chan error, 1)
	bl.toWriter, bl.written = in, out
	go func() {
		for buf := range in {
			err := sw.Write(buf)
			buf.Release()
			out <- err
		}
	}()
	return nil
}

// settle waits for the buffer with the writer goroutine, if any, and
// returns its error.
func (bl *bulkLoad) settle() error {
	if !bl.inFlight {
		return nil
	}
	bl.inFlight = false
	return <-bl.written
}

// stopWriter waits for the writer goroutine's buffer and ends it.
func (bl *bulkLoad) stopWriter() error {
	if bl.toWriter == nil {
		return nil
	}
	err := bl.settle()
	close(bl.toWriter)
	bl.toWriter = nil
	return err
}

// add takes a sorted batch of distinct records; it reports false when the
// bulk load has ended and the caller must write the batch itself.
func (bl *bulkLoad) add(ctx context.Context, imp *importTx, rs []record) (bool, error) {
	c := imp.c
	if bl.mode == bulkStream {
		if bl.last != nil && bytes.Compare(rs[0].key, bl.last) <= 0 {
			c.log.Info("first import out of order or with repeats; going on with write batches", "breach", imp.breach.Name, "streamed", imp.stats.New)
			return false, bl.leave(ctx, imp)
		}
		if err := c.acquire(); err != nil {
			return false, err
		}
		defer c.release()
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if err := c.checkSpace(int64(len(rs))*bulkBytesPerKey, "the bulk load of "+imp.breach.Name); err != nil {
			return false, err
		}
		// To the filter and the base (base.go): no Badger row.
		for _, r := range rs {
			fk := c.kind.filterKey(r.key)
			imp.filter.add(fk[:])
			if err := bl.base.addCount(r.key, r.count); err != nil {
				return false, classify("the bulk load of "+imp.breach.Name, err)
			}
		}
		bl.last = rs[len(rs)-1].key
		imp.stats.New += uint64(len(rs))
		imp.added += uint64(len(rs))
		return true, nil
	}
	return false, nil // a spilled load takes its batches in addKeys
}

// addKeys buffers a batch of a spilled bulk load, spilling a sorted run when
// the buffer is full; it reports false when the bulk load has ended (over
// MaxBulkDigests) and the caller must write the batch itself.
func (bl *bulkLoad) addKeys(ctx context.Context, imp *importTx, in input) (bool, error) {
	c := imp.c
	k := c.kind
	n := len(in.keys) / k.keySize
	if len(in.keys)%k.keySize != 0 || (k.counted && len(in.counts) != n) {
		return false, breachd.Errorf(breachd.ErrInvalidArgument, "a batch of %d bytes and %d counts for %d-byte keys", len(in.keys), len(in.counts), k.keySize)
	}
	for _, cnt := range in.counts {
		if cnt == 0 || cnt > breachd.MaxPasswordCount {
			return false, breachd.Errorf(breachd.ErrInvalidArgument, "a count of %d: want 1 to %d", cnt, uint64(breachd.MaxPasswordCount))
		}
	}
	if max := c.opts.MaxBulkDigests; max > 0 && bl.runs.buffered()+n > max {
		return false, bl.leave(ctx, imp)
	}
	// Nothing is written before the commit; refuse early anyway.
	if err := c.checkSpace(int64(bl.runs.buffered()+n)*bulkBytesPerKey, "the bulk load of "+imp.breach.Name); err != nil {
		return false, err
	}
	imp.stats.Received += uint64(n)
	bl.runs.addKeys(in.keys, in.counts)
	if bl.runs.buffered() >= c.opts.BulkChunkDigests {
		if err := c.checkSpace(int64(bl.runs.buffered()*bl.runs.recSize), "spilling the bulk load of "+imp.breach.Name); err != nil {
			return false, err
		}
		if err := bl.runs.spill(); err != nil {
			return false, err
		}
		c.log.Debug("bulk load spilled a run", "breach", imp.breach.Name, "runs", len(bl.runs.files))
	}
	return true, nil
}

// write appends one row to the StreamWriter's buffer, and the filter and
// index, flushing the buffer when it is full.
func (bl *bulkLoad) write(ctx context.Context, c *corpus, imp *importTx, r record) error {
	k := c.kind
	fk := k.filterKey(r.key)
	imp.filter.add(fk[:])
	// The key and value are copied into the buffer: the scratch is reused.
	bl.val = k.appendEntry(bl.val[:0], imp.seg, r.count)
	if w := bl.index; w != nil {
		var err error
		if k.counted {
			err = w.addCount(r.key, r.count)
		} else {
			err = w.add(r.key, bl.val)
		}
		if err != nil {
			return err
		}
	}
	bl.key = k.rowKey(bl.key[:0], r.key)
	putKV(bl.buf, bl.key, bl.val, bulkVersion, bulkStreamID)
	if bl.inBuf++; bl.inBuf == bulkBatch {
		return bl.flush(ctx, c, imp)
	}
	return nil
}

func (bl *bulkLoad) flush(ctx context.Context, c *corpus, imp *importTx) error {
	if bl.inBuf == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.checkSpace(int64(bl.inBuf)*bulkBytesPerKey, "the bulk load of "+imp.breach.Name); err != nil {
		return err
	}
	// The buffer before this one must be written first: at most one is
	// in flight, so memory stays at two buffers.
	if err := bl.settle(); err != nil {
		return classify("bulk load", err)
	}
	bl.toWriter <- bl.buf
	bl.inFlight = true
	bl.buf, bl.inBuf = z.NewBuffer(bulkBatch*64, "breachd.bulk"), 0
	if bl.flushes++; bl.flushes%pageOutEvery == 0 && c.lookupsSkipTables() {
		c.pageOutTables()
	}
	return nil
}

// finishWriter writes what is left and closes the StreamWriter, then
// writes the side rows the load buffered (the StreamWriter began by wiping
// the corpus: they could not go before).
func (bl *bulkLoad) finishWriter(ctx context.Context, c *corpus, imp *importTx) error {
	if err := bl.flush(ctx, c, imp); err != nil {
		return err
	}
	if err := bl.stopWriter(); err != nil {
		return classify("bulk load", err)
	}
	bl.buf.Release()
	bl.buf = nil
	sw := bl.sw
	bl.sw = nil
	if err := sw.Flush(); err != nil {
		return classify("bulk load", err)
	}
	if c.lookupsSkipTables() {
		c.pageOutTables()
	}
	return bl.side.writeTo(ctx, c)
}

// leave ends the bulk load part way: a stream's base is put in place (the
// write batches merge with it), its segment recorded as pending (so that
// an abandoned import is collected), and the import goes on with write
// batches under it; a spilled load takes a segment of its own and replays
// what it buffered through write batches.
func (bl *bulkLoad) leave(ctx context.Context, imp *importTx) error {
	c := imp.c
	imp.bulk = nil
	bl.dropIndex() // it would lack the keys the write batches bring
	if bl.mode == bulkStream {
		defer bl.end()
		if err := c.acquire(); err != nil {
			return err
		}
		defer c.release()
		// Version 0 in its header: it lacks the write batches' keys, and
		// must never pass for a lookup index.
		if err := bl.finishBase(c, imp, 0); err != nil {
			return err
		}
		if err := bl.side.writeTo(ctx, c); err != nil {
			return err
		}
		err := c.db.Update(func(txn *badger.Txn) error {
			// Since 0: the stream writer's rows carry versions of
			// their own, older than this transaction.
			return setSegment(txn, imp.seg, imp.breach.Name, false, 0)
		})
		if err != nil {
			return classify("begin import", err)
		}
		imp.recorded = true
		return nil
	}
	defer bl.end()
	if err := c.acquire(); err != nil {
		return err
	}
	err := bl.side.writeTo(ctx, c)
	c.release()
	if err != nil {
		return err
	}
	buffered := uint64(bl.runs.buffered()) + bl.runs.spilled
	received := imp.stats.Received
	imp.stats = importStats{}
	if err := c.acquire(); err != nil {
		return err
	}
	err = imp.newSegment(ctx)
	c.release()
	if err == nil {
		c.log.Info("bulk load over its bound; going on with write batches", "breach", imp.breach.Name,
			"buffered", buffered, "max_bulk_digests", c.opts.MaxBulkDigests, "segment", imp.seg)
		err = bl.replay(ctx, imp)
	}
	// The replay wrote each buffered key once, as new, known or already
	// in the breach: the rest of what was received were repeats.
	imp.stats.Received = received
	imp.stats.Duplicates = received - imp.stats.New - imp.stats.Known
	return err
}

// replay writes what a spilled bulk load buffered through write batches.
func (bl *bulkLoad) replay(ctx context.Context, imp *importTx) error {
	k := imp.c.kind
	in := input{}
	flush := func() error {
		if len(in.keys) == 0 {
			return nil
		}
		received := imp.stats.Received
		err := imp.add(ctx, in)
		imp.stats.Received = received
		in.keys, in.counts = in.keys[:0], in.counts[:0]
		return err
	}
	for r, err := range bl.runs.merged() {
		if err != nil {
			return err
		}
		in.keys = append(in.keys, r.key...)
		if k.counted {
			in.counts = append(in.counts, r.count)
		}
		if len(in.keys) >= 10_000*k.keySize {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// finishBase puts a stream's base in place and opens it: a commit
// records it; until then the corpus's version 0 keeps lookups away, and
// an abandoned import (imp.base) removes it.
func (bl *bulkLoad) finishBase(c *corpus, imp *importTx, version uint64) error {
	w := bl.base
	bl.base = nil
	if err := w.finish(version); err != nil {
		w.abort()
		return classify("the bulk load of "+imp.breach.Name, err)
	}
	imp.base = true
	x, err := w.install()
	if err != nil {
		return classify("the bulk load of "+imp.breach.Name, err)
	}
	c.setBase(x)
	bl.baseDone = true
	return nil
}

// finish writes a spilled bulk load's rows (the commit calls it, holding a
// call slot), or puts a stream's base in place.
func (bl *bulkLoad) finish(ctx context.Context, imp *importTx) error {
	c := imp.c
	if bl.mode == bulkStream {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := bl.finishBase(c, imp, imp.old.version+1); err != nil {
			return err
		}
		return bl.side.writeTo(ctx, c)
	}
	start := time.Now()
	// The filter is sized for the keys received (an upper bound on the
	// distinct ones), with room for a quarter more keys at the target
	// rate; later imports rebuild it larger when the corpus outgrows it.
	n := uint64(bl.runs.buffered()) + bl.runs.spilled
	imp.filter = newFilter(max(c.opts.ExpectedKeys, n+n/4), c.opts.FalsePositiveRate)
	if err := c.checkSpace(int64(n)*bulkBytesPerKey+int64(imp.filter.blocks*blockBits/8), "the bulk load of "+imp.breach.Name); err != nil {
		return err
	}
	if err := bl.startWriter(c); err != nil {
		return err
	}
	imp.wiped = true
	if c.index != nil {
		w, err := c.newIndexWriter(n, nil)
		if err != nil {
			return err
		}
		bl.index = w
	}
	var distinct uint64
	for r, err := range bl.runs.merged() {
		if err != nil {
			return err
		}
		if err := bl.write(ctx, c, imp, r); err != nil {
			return err
		}
		distinct++
	}
	if err := bl.finishWriter(ctx, c, imp); err != nil {
		return err
	}
	imp.stats.Duplicates = imp.stats.Received - distinct
	imp.stats.New, imp.added = distinct, distinct
	c.log.Info("bulk load written", "breach", imp.breach.Name, "keys", distinct, "spilled_runs", len(bl.runs.files), "duration", time.Since(start))
	return nil
}

// installIndex installs the index the bulk load wrote, now that its
// version is committed: a stream's base is that index, linked.
func (bl *bulkLoad) installIndex(c *corpus, version uint64) {
	if bl.baseDone && c.index != nil {
		if err := c.linkBaseIndex(); err != nil {
			c.log.Warn("linking the first release as the lookup index failed; building it", "err", err)
		}
		return
	}
	if bl.index == nil {
		return
	}
	w := bl.index
	bl.index = nil
	defer c.doneWriting(w)
	if w.finish(version) != nil {
		w.abort()
		return
	}
	x, err := w.install()
	if err == nil && !c.publishIndex(x, nil) {
		unmapFile(x.mapped)
	}
}

// end drops what the bulk load holds: its buffers, run files, an index
// file not installed, a StreamWriter not flushed (nothing written).
func (bl *bulkLoad) end() {
	bl.runs.remove()
	bl.side.remove()
	bl.dropIndex()
	if bl.base != nil {
		bl.base.abort()
		bl.base = nil
	}
	if bl.sw != nil {
		bl.stopWriter() // the import is abandoned: its error no longer matters
		bl.sw.Cancel()
		bl.sw = nil
	}
	if bl.buf != nil {
		bl.buf.Release()
		bl.buf = nil
	}
}

// dropIndex drops the index the bulk load was writing, if any.
func (bl *bulkLoad) dropIndex() {
	if bl.index != nil {
		bl.index.c.doneWriting(bl.index)
		bl.index.abort()
		bl.index = nil
	}
}

// lookupsSkipTables reports whether the tables a bulk load writes are read
// by no lookup once it commits (the filter and the index answer: emails
// read Badger only for a pending index, passwords' ranges and counts read
// the index), so that their pages may go: serving memory is then the
// index's, not both.
func (c *corpus) lookupsSkipTables() bool { return !c.kind.counted || c.index != nil }

// pageOutTables pages out the tables a bulk load wrote (see pageOutTables
// in pageout_linux.go). It is advice: where the kernel cannot take it, the
// load goes on with the pages mapped, and says so once.
func (c *corpus) pageOutTables() {
	if err := pageOutTables(c.dir); err != nil && !c.pageOutFailed {
		c.pageOutFailed = true
		c.log.Info("bulk load keeps its table pages mapped", "reason", err)
	}
}

// putKV writes a pb.KV of key, val, version and stream id into buf as
// badger.KVToBuffer does (the same bytes: TestPutKV), without protobuf's
// reflection: KVToBuffer was 18% of a 16.7M-hash bulk load's CPU.
func putKV(buf *z.Buffer, key, val []byte, version uint64, stream uint32) {
	n := 0
	if len(key) > 0 {
		n += 1 + protowire.SizeBytes(len(key))
	}
	if len(val) > 0 {
		n += 1 + protowire.SizeBytes(len(val))
	}
	if version != 0 {
		n += 1 + protowire.SizeVarint(version)
	}
	if stream != 0 {
		n += 1 + protowire.SizeVarint(uint64(stream))
	}
	b := buf.SliceAllocate(n)[:0]
	if len(key) > 0 {
		b = protowire.AppendBytes(protowire.AppendTag(b, 1, protowire.BytesType), key)
	}
	if len(val) > 0 {
		b = protowire.AppendBytes(protowire.AppendTag(b, 2, protowire.BytesType), val)
	}
	if version != 0 {
		b = protowire.AppendVarint(protowire.AppendTag(b, 4, protowire.VarintType), version)
	}
	if stream != 0 {
		protowire.AppendVarint(protowire.AppendTag(b, 10, protowire.VarintType), uint64(stream))
	}
}
