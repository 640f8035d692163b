package store

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/ristretto/v2/z"

	"github.com/breachd/breachd"
)

// The first import into a store is a bulk load: Add only buffers digests,
// and Commit sorts them and writes them straight into sorted tables with
// Badger's StreamWriter, with no memtable, write-ahead log or compaction on
// the way (about 1.5 s instead of 3.5 s for the 1.29M Sega Pass digests).
//
// A store with no committed import has never answered "exposed", so the
// StreamWriter's Prepare may wipe it: that also clears the rows of an
// earlier first import that crashed or was abandoned. Lookups meanwhile
// never touch Badger, because an empty catalogue answers "not exposed"
// before it gets that far.

// bulkBatch is how many rows go to the StreamWriter per buffer.
const bulkBatch = 1 << 16

// pageOutEvery is how many buffers go to the StreamWriter between two
// calls of pageOutTables: about 30 MB of tables. A bulk load's memory is
// then its sorting and buffers, not the tables it wrote (at 100M digests,
// 5.2 GiB of mapped table pages otherwise).
const pageOutEvery = 8

func (imp *importTx) addBulk(digests []breachd.Digest) error {
	imp.bulk = append(imp.bulk, digests...)
	imp.stats.Received += uint64(len(digests))
	if len(imp.bulk) >= imp.s.opts.BulkChunkDigests {
		return imp.spill()
	}
	return nil
}

// commitBulk writes the buffered (and spilled) digests in order, builds the
// filter for them, and returns it to be swapped in with the catalogue.
func (imp *importTx) commitBulk(ctx context.Context) (*filter, error) {
	s := imp.s
	start := time.Now()
	// The filter is sized for the digests received (an upper bound on the
	// distinct ones), with room for a quarter more keys at the target rate;
	// later imports rebuild it larger when the corpus outgrows it by half.
	n := imp.spilled + uint64(len(imp.bulk))
	f := newFilter(max(s.opts.ExpectedKeys, n+n/4), s.opts.FalsePositiveRate)
	if err := s.checkSpace(int64(n)*bulkBytesPerDigest+int64(f.blocks*blockBits/8), "the bulk load of "+imp.breach.Name); err != nil {
		return nil, err
	}
	sw := s.db.NewStreamWriter()
	defer sw.Cancel()
	if err := sw.Prepare(); err != nil {
		return nil, classify("prepare bulk load", err)
	}
	// The lookup index is written in the same pass (the digests come out
	// sorted), and installed once the commit is written.
	if s.opts.Index != IndexOff {
		w, err := newIndexWriter(s.dir, n)
		if err != nil {
			return nil, err
		}
		imp.index = w
	}
	val := binary.BigEndian.AppendUint32(nil, imp.seg)
	buf := z.NewBuffer(bulkBatch*64, "breachd.bulk")
	defer func() { buf.Release() }()
	var distinct, inBuf, flushes int
	flush := func() error {
		if inBuf == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		err := sw.Write(buf)
		buf.Release()
		buf, inBuf = z.NewBuffer(bulkBatch*64, "breachd.bulk"), 0
		if flushes++; flushes%pageOutEvery == 0 {
			s.pageOutTables()
		}
		return classify("bulk load", err)
	}
	for d, err := range imp.merged() {
		if err != nil {
			return nil, err
		}
		f.add(d[:])
		if imp.index != nil {
			if err := imp.index.add(d[:], val); err != nil {
				return nil, err
			}
		}
		k := emailKey(&d)
		badger.KVToBuffer(&pb.KV{Key: k[:], Value: val, Version: 1, StreamId: 1}, buf)
		distinct++
		if inBuf++; inBuf == bulkBatch {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if err := sw.Flush(); err != nil {
		return nil, classify("bulk load", err)
	}
	s.pageOutTables()
	imp.stats.Duplicates = imp.stats.Received - uint64(distinct)
	imp.stats.NewAccounts = uint64(distinct)
	runs := len(imp.spills)
	imp.bulk = nil
	imp.removeSpills()
	s.log.Info("bulk load written", "breach", imp.breach.Name, "digests", distinct, "spilled_runs", runs, "duration", time.Since(start))
	return f, nil
}

// pageOutTables pages out the tables a bulk load wrote (see pageOutTables
// in pageout_linux.go). It is advice: where the kernel cannot take it, the
// load goes on with the pages mapped, and says so once.
func (s *Store) pageOutTables() {
	if err := pageOutTables(s.dir); err != nil && !s.pageOutFailed {
		s.pageOutFailed = true
		s.log.Info("bulk load keeps its table pages mapped", "reason", err)
	}
}
