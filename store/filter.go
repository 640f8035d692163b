package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"

	"github.com/bits-and-blooms/bloom/v3"
)

// filter is a Bloom filter over account digests that is safe for concurrent
// use: lookups test it under a read lock, imports add whole batches under the
// write lock.
type filter struct {
	mu  sync.RWMutex
	bf  *bloom.BloomFilter // guarded by mu
	cap uint64             // keys the filter was sized for; immutable
	fpr float64            // target false-positive rate at cap; immutable
}

func newFilter(capacity uint64, fpr float64) *filter {
	if capacity < 1024 {
		capacity = 1024
	}
	return &filter{bf: bloom.NewWithEstimates(uint(capacity), fpr), cap: capacity, fpr: fpr}
}

func (f *filter) test(key []byte) bool {
	f.mu.RLock()
	ok := f.bf.Test(key)
	f.mu.RUnlock()
	return ok
}

// testPacked appends to dst the positions of the 32-byte keys in packed that
// may be present, testing them all under one read lock.
func (f *filter) testPacked(packed []byte, dst []int32) []int32 {
	f.mu.RLock()
	for i := 0; i*32 < len(packed); i++ {
		if f.bf.Test(packed[i*32 : (i+1)*32]) {
			dst = append(dst, int32(i))
		}
	}
	f.mu.RUnlock()
	return dst
}

func (f *filter) addMany(keys [][]byte) {
	f.mu.Lock()
	for _, k := range keys {
		f.bf.Add(k)
	}
	f.mu.Unlock()
}

// FilterStats describes the Bloom filter.
type FilterStats struct {
	Bits      uint64  // size of the bit set
	Hashes    uint64  // number of hash functions
	Capacity  uint64  // keys it was sized for
	TargetFPR float64 // false-positive rate it was sized for at Capacity
	Keys      uint64  // distinct digests it holds
	// EstimatedFPR is the theoretical false-positive rate at Keys.
	EstimatedFPR float64
}

func (f *filter) stats(keys uint64) FilterStats {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, k := uint64(f.bf.Cap()), uint64(f.bf.K())
	est := math.Pow(1-math.Exp(-float64(k)*float64(keys)/float64(m)), float64(k))
	return FilterStats{Bits: m, Hashes: k, Capacity: f.cap, TargetFPR: f.fpr, Keys: keys, EstimatedFPR: est}
}

// The filter file: a fixed header, the library's own encoding of the filter,
// and a CRC-32C of everything before it.
const (
	filterFile    = "breachd.bloom"
	filterMagic   = "BRDBLOOM"
	filterFormat  = 1
	filterHdrSize = 8 + 4 + 8 + 8 + 8 + 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// filterHeader ties a saved filter to the data it was built from.
type filterHeader struct {
	dataVersion uint64  // Badger's MaxVersion when the filter was saved
	keys        uint64  // distinct digests in the filter
	capacity    uint64  // keys the filter was sized for
	fpr         float64 // target false-positive rate
}

func (h filterHeader) marshal() []byte {
	b := make([]byte, 0, filterHdrSize)
	b = append(b, filterMagic...)
	b = binary.BigEndian.AppendUint32(b, filterFormat)
	b = binary.BigEndian.AppendUint64(b, h.dataVersion)
	b = binary.BigEndian.AppendUint64(b, h.keys)
	b = binary.BigEndian.AppendUint64(b, h.capacity)
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(h.fpr))
	return b
}

// save writes the filter atomically: temp file, fsync, rename, fsync dir.
func (f *filter) save(dir string, h filterHeader) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	h.capacity, h.fpr = f.cap, f.fpr
	tmp, err := os.CreateTemp(dir, filterFile+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	crc := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(tmp, crc), 1<<20)
	if _, err := bw.Write(h.marshal()); err != nil {
		tmp.Close()
		return err
	}
	if _, err := f.bf.WriteTo(bw); err != nil {
		tmp.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32())); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, filterFile)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

var errNoFilter = errors.New("no saved filter")

// loadFilter reads a saved filter and its header, verifying the checksum.
func loadFilter(dir string) (*filter, filterHeader, error) {
	var h filterHeader
	b, err := os.ReadFile(filepath.Join(dir, filterFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, h, errNoFilter
	}
	if err != nil {
		return nil, h, err
	}
	if len(b) < filterHdrSize+4 || string(b[:8]) != filterMagic {
		return nil, h, errors.New("not a filter file")
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, h, errors.New("checksum mismatch")
	}
	if v := binary.BigEndian.Uint32(b[8:]); v != filterFormat {
		return nil, h, fmt.Errorf("format %d, want %d", v, filterFormat)
	}
	h.dataVersion = binary.BigEndian.Uint64(b[12:])
	h.keys = binary.BigEndian.Uint64(b[20:])
	h.capacity = binary.BigEndian.Uint64(b[28:])
	h.fpr = math.Float64frombits(binary.BigEndian.Uint64(b[36:]))
	bf := &bloom.BloomFilter{}
	if _, err := bf.ReadFrom(bytes.NewReader(body[filterHdrSize:])); err != nil {
		return nil, h, fmt.Errorf("decode: %w", err)
	}
	return &filter{bf: bf, cap: h.capacity, fpr: h.fpr}, h, nil
}
