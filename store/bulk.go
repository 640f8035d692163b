package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"slices"
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

func (imp *importTx) addBulk(digests []breachd.Digest) {
	imp.bulk = append(imp.bulk, digests...)
	imp.stats.Received += uint64(len(digests))
}

// commitBulk writes the buffered digests, builds the filter for them, and
// returns it to be swapped in with the catalogue.
func (imp *importTx) commitBulk(ctx context.Context) (*filter, error) {
	s := imp.s
	start := time.Now()
	// Sorting in place and keeping the result makes a retried Commit (after,
	// say, a full disk) write the same rows again.
	ds := imp.bulk
	slices.SortFunc(ds, func(a, b breachd.Digest) int { return bytes.Compare(a[:], b[:]) })
	ds = slices.Compact(ds)
	imp.bulk = ds
	imp.stats.Duplicates = imp.stats.Received - uint64(len(ds))
	imp.stats.NewAccounts = uint64(len(ds))

	// Room for a quarter more keys at the target rate; later imports rebuild
	// it larger when the corpus outgrows it by half.
	n := uint64(len(ds))
	f := newFilter(max(s.opts.ExpectedKeys, n+n/4), s.opts.FalsePositiveRate)
	for i := range ds {
		f.add(ds[i][:])
	}
	if err := s.checkSpace(int64(len(ds))*bulkBytesPerDigest+int64(f.blocks*blockBits/8), "the bulk load of "+imp.breach.Name); err != nil {
		return nil, err
	}
	sw := s.db.NewStreamWriter()
	defer sw.Cancel()
	if err := sw.Prepare(); err != nil {
		return nil, classify("prepare bulk load", err)
	}
	val := binary.BigEndian.AppendUint32(nil, imp.seg)
	for lo := 0; lo < len(ds); lo += bulkBatch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		buf := z.NewBuffer(bulkBatch*64, "breachd.bulk")
		for i := lo; i < min(lo+bulkBatch, len(ds)); i++ {
			k := emailKey(&ds[i])
			badger.KVToBuffer(&pb.KV{Key: k[:], Value: val, Version: 1, StreamId: 1}, buf)
		}
		err := sw.Write(buf)
		buf.Release()
		if err != nil {
			return nil, classify("bulk load", err)
		}
	}
	if err := sw.Flush(); err != nil {
		return nil, classify("bulk load", err)
	}
	imp.bulk = nil
	s.log.Info("bulk load written", "breach", imp.breach.Name, "digests", len(ds), "duration", time.Since(start))
	return f, nil
}
