package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/bits"
	"os"
	"path/filepath"

	"github.com/breachd/breachd/internal/atomicfile"
)

// The filter log: every change saves its filter before it commits (see
// corpus.saveFilterAt), and writing the whole filter each time cost a
// change time and disk writes in proportion to the corpus, not to the
// change: 98 MiB, two thirds of a ten-account import's time, with a filter
// sized for 50M keys (BenchmarkSmallImport), and 4.6 GiB at 2 billion.
// Instead a change appends the blocks its keys changed to the log beside
// the last whole save, and the whole filter is written again only when
// the log would outgrow a quarter of it (or the filter is a new one).
//
// The log file: a header naming the whole save it extends (its version and
// checksum) with a checksum of its own, then records, each
//
//	u32 n, u64 corpus version, u64 keys, n × (u64 block, 8 × u64 words), u32 CRC-32C
//
// all big-endian but the words (little-endian, as in memory), the CRC over
// the record before it. A record holds the whole of each block it names,
// and is ORed in at load: bits are only ever added, so a record is never
// wrong to apply, only perhaps not needed. Records are synced before the
// commit they save for; a kill inside one leaves a torn tail, which the
// load stops at (its change never committed) and the next append cuts
// off. A log that names another save (one written before the last whole
// save, which removes it; a crash can leave it) is ignored.
const (
	filterLogFile    = "breachd.bloom.log"
	filterLogMagic   = "BRDBLOG1"
	filterLogHdrSize = 8 + 8 + 4 + 4
	logRecordHead    = 4 + 8 + 8
	logBlockSize     = 8 + blockWords*8
)

// filterID names a whole save of the filter: the corpus version it was
// saved at and the CRC-32C its file ends with.
type filterID struct {
	version uint64
	crc     uint32
}

// logRecordSize is the size of a record of n blocks.
func logRecordSize(n int) int64 { return logRecordHead + int64(n)*logBlockSize + 4 }

// savedFilter is what the data directory holds of the published filter:
// f, as of its last save (whole, or whole plus the log's records).
type savedFilter struct {
	f       *filter  // nil: the next save writes the whole filter
	id      filterID // the whole save the log extends
	logSize int64    // the log's valid bytes; 0: no log yet
	// version and keys are what the last save recorded: a save that
	// would record them again with no block changed (a Close after no
	// change) writes nothing.
	version, keys uint64
}

// markDirty records that block b changed since the last save.
func (f *filter) markDirty(b uint64) {
	if f.dirty == nil {
		f.dirty = make([]uint64, (f.blocks+63)/64)
	}
	if f.dirty[b/64]&(1<<(b%64)) == 0 {
		f.dirty[b/64] |= 1 << (b % 64)
		f.nDirty++
	}
}

// eachDirty calls fn for each changed block, in order.
func (f *filter) eachDirty(fn func(b uint64)) {
	for i, w := range f.dirty {
		for w != 0 {
			fn(uint64(i)*64 + uint64(bits.TrailingZeros64(w)))
			w &= w - 1
		}
	}
}

// saved forgets the changed blocks: a save holds them.
func (f *filter) saved() {
	if f.nDirty > 0 {
		clear(f.dirty)
		f.nDirty = 0
	}
}

// appendFilterLog appends a record of f's changed blocks, for corpus
// version v holding keys keys, to the log extending save id whose valid
// bytes are size (0: a new log), and syncs it. It returns the log's size.
func appendFilterLog(dir string, id filterID, size int64, f *filter, v, keys uint64) (int64, error) {
	path := filepath.Join(dir, filterLogFile)
	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return 0, err
	}
	defer file.Close()
	if size == 0 {
		hdr := append([]byte(filterLogMagic), binary.BigEndian.AppendUint64(nil, id.version)...)
		hdr = binary.BigEndian.AppendUint32(hdr, id.crc)
		hdr = binary.BigEndian.AppendUint32(hdr, crc32.Checksum(hdr, castagnoli))
		size = int64(len(hdr))
		if err := file.Truncate(0); err != nil {
			return 0, err
		}
		if _, err := file.WriteAt(hdr, 0); err != nil {
			return 0, err
		}
	}
	// Cut off a torn record, if a kill left one, and write after the last
	// whole one.
	if err := file.Truncate(size); err != nil {
		return 0, err
	}
	if _, err := file.Seek(size, io.SeekStart); err != nil {
		return 0, err
	}
	crc := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(file, crc), 1<<20)
	var head [logRecordHead]byte
	binary.BigEndian.PutUint32(head[0:], uint32(f.nDirty))
	binary.BigEndian.PutUint64(head[4:], v)
	binary.BigEndian.PutUint64(head[12:], keys)
	bw.Write(head[:])
	var blk [logBlockSize]byte
	f.eachDirty(func(b uint64) {
		binary.BigEndian.PutUint64(blk[:], b)
		for w, x := range f.words[b*blockWords : (b+1)*blockWords] {
			binary.LittleEndian.PutUint64(blk[8+8*w:], x)
		}
		bw.Write(blk[:])
	})
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	reach("filter-log-torn") // the record without its checksum
	if _, err := file.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32())); err != nil {
		return 0, err
	}
	if err := file.Sync(); err != nil {
		return 0, err
	}
	if size == filterLogHdrSize { // a new log: its name made durable too
		if err := atomicfile.SyncDir(dir); err != nil {
			return 0, err
		}
	}
	reach("filter-logged")
	return size + logRecordSize(f.nDirty), nil
}

// replayFilterLog ORs into f, loaded from the whole save id, the records
// of the log that extends it, and returns h with the last one's version
// and keys, and the log's valid bytes (0: no log of this save). A torn or
// damaged tail ends the log where it begins.
func replayFilterLog(dir string, f *filter, id filterID, h filterHeader) (filterHeader, int64, error) {
	file, err := os.Open(filepath.Join(dir, filterLogFile))
	if errors.Is(err, os.ErrNotExist) {
		return h, 0, nil
	}
	if err != nil {
		return h, 0, err
	}
	defer file.Close()
	var hdr [filterLogHdrSize]byte
	if _, err := io.ReadFull(file, hdr[:]); err != nil ||
		string(hdr[:8]) != filterLogMagic ||
		binary.BigEndian.Uint32(hdr[20:]) != crc32.Checksum(hdr[:20], castagnoli) ||
		binary.BigEndian.Uint64(hdr[8:]) != id.version || binary.BigEndian.Uint32(hdr[16:]) != id.crc {
		return h, 0, nil // another save's, or unreadable: not this filter's
	}
	// Two passes: the records are checked, then applied, so that nothing
	// of a damaged one is.
	records, end, err := scanFilterLog(file, f.blocks)
	if err != nil {
		return h, 0, err
	}
	if _, err := file.Seek(filterLogHdrSize, io.SeekStart); err != nil {
		return h, 0, err
	}
	r := bufio.NewReaderSize(file, 1<<20)
	var head [logRecordHead]byte
	var blk [logBlockSize]byte
	for range records {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return h, 0, err
		}
		for range binary.BigEndian.Uint32(head[0:]) {
			if _, err := io.ReadFull(r, blk[:]); err != nil {
				return h, 0, err
			}
			b := binary.BigEndian.Uint64(blk[:])
			for w := range blockWords {
				f.words[b*blockWords+uint64(w)] |= binary.LittleEndian.Uint64(blk[8+8*w:])
			}
		}
		if _, err := r.Discard(4); err != nil {
			return h, 0, err
		}
		h.corpusVersion = binary.BigEndian.Uint64(head[4:])
		h.keys = binary.BigEndian.Uint64(head[12:])
	}
	return h, end, nil
}

// scanFilterLog reads the records after the header, checking each, and
// returns how many are whole and where the last ends.
func scanFilterLog(file *os.File, blocks uint64) (int, int64, error) {
	if _, err := file.Seek(filterLogHdrSize, io.SeekStart); err != nil {
		return 0, 0, err
	}
	r := bufio.NewReaderSize(file, 1<<20)
	end := int64(filterLogHdrSize)
	var records int
	var head [logRecordHead]byte
	var blk [logBlockSize]byte
	var sum [4]byte
	for {
		crc := crc32.New(castagnoli)
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return records, end, nil // the end, or a torn head
		}
		crc.Write(head[:])
		n := binary.BigEndian.Uint32(head[0:])
		if uint64(n) > blocks {
			return records, end, nil // damaged
		}
		for range n {
			if _, err := io.ReadFull(r, blk[:]); err != nil {
				return records, end, nil
			}
			if binary.BigEndian.Uint64(blk[:]) >= blocks {
				return records, end, nil
			}
			crc.Write(blk[:])
		}
		if _, err := io.ReadFull(r, sum[:]); err != nil || binary.BigEndian.Uint32(sum[:]) != crc.Sum32() {
			return records, end, nil
		}
		records++
		end += logRecordSize(int(n))
	}
}

// removeFilterLog removes the log (after a whole save, which it no longer
// extends). A log left behind names the save before and is ignored.
func removeFilterLog(dir string) error {
	if err := os.Remove(filepath.Join(dir, filterLogFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the filter log: %w", err)
	}
	return nil
}
