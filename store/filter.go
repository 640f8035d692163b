package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/bits-and-blooms/bitset"
)

// filter is a cache-line-blocked Bloom filter over account digests, laid out
// over the bits-and-blooms bit set. Every digest maps to one 512-bit block (a
// 64-byte cache line) and sets or tests k bits inside it, so a test touches
// one cache line however large the filter grows.
//
// Digests are SHA-256 outputs, already uniformly random, so the filter hashes
// nothing: the first 8 bytes pick the block and the next 24 give up to 21
// 9-bit probe positions.
//
// It is safe for concurrent use without locks: add sets bits with atomic OR,
// tests read words atomically (a plain load on amd64 and arm64). A digest
// added before its row is written to Badger is therefore never missed.
type filter struct {
	set    *bitset.BitSet
	words  []uint64 // set's words: blocks*blockWords
	blocks uint64
	k      int
	cap    uint64  // keys the filter was sized for; immutable
	fpr    float64 // target false-positive rate at cap; immutable
}

const (
	blockBits  = 512
	blockWords = blockBits / 64
	probeBits  = 9 // log2(blockBits)
	maxProbes  = 3 * (64 / probeBits)
)

// newFilter sizes a filter for capacity keys at false-positive rate fpr.
func newFilter(capacity uint64, fpr float64) *filter {
	capacity = max(capacity, 1024)
	blocks, k := blockedSize(capacity, fpr)
	set := bitset.From(makeWords(blocks * blockWords))
	return &filter{set: set, words: set.Words(), blocks: blocks, k: k, cap: capacity, fpr: fpr}
}

// blockedSize returns the fewest blocks, and the probe count, that keep the
// false-positive rate at n keys at or under fpr.
func blockedSize(n uint64, fpr float64) (blocks uint64, k int) {
	for kk := 1; kk <= maxProbes; kk++ {
		// The rate falls as blocks grow: binary search the smallest count.
		lo, hi := uint64(1), max(n, 1)*64/blockBits+1 // 64 bits per key is always enough
		if blockedFPR(hi, kk, n) > fpr {
			continue
		}
		for lo < hi {
			mid := lo + (hi-lo)/2
			if blockedFPR(mid, kk, n) <= fpr {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		if blocks == 0 || lo < blocks {
			blocks, k = lo, kk
		}
	}
	if blocks == 0 { // fpr below what 21 probes reach at 64 bits per key
		return max(n, 1)*64/blockBits + 1, maxProbes
	}
	return blocks, k
}

// blockedFPR is the false-positive rate of a blocked filter with the given
// shape holding n keys: the rate of a one-block filter, averaged over the
// Poisson-distributed number of keys that land in a block.
func blockedFPR(blocks uint64, k int, n uint64) float64 {
	lambda := float64(n) / float64(blocks)
	if lambda == 0 {
		return 0
	}
	hi := int(lambda + 12*math.Sqrt(lambda) + 24)
	lo := max(0, int(lambda-12*math.Sqrt(lambda)))
	var sum float64
	for j := lo; j <= hi; j++ {
		lg, _ := math.Lgamma(float64(j) + 1)
		p := math.Exp(float64(j)*math.Log(lambda) - lambda - lg)
		set := 1 - math.Pow(1-1.0/blockBits, float64(j*k))
		sum += p * math.Pow(set, float64(k))
	}
	return sum
}

// blockBase returns the index of the first word of the key's block.
func (f *filter) blockBase(key []byte) uint64 {
	hi, _ := bits.Mul64(binary.LittleEndian.Uint64(key), f.blocks)
	return hi * blockWords
}

// locate returns the key's block and the source of its probe positions.
func (f *filter) locate(key []byte) (block []uint64, src [3]uint64) {
	_ = key[31]
	base := f.blockBase(key)
	src[0] = binary.LittleEndian.Uint64(key[8:])
	src[1] = binary.LittleEndian.Uint64(key[16:])
	src[2] = binary.LittleEndian.Uint64(key[24:])
	return f.words[base : base+blockWords : base+blockWords], src
}

// probe is the i-th bit position (0..511) in the block: 7 per source word.
func probe(src *[3]uint64, i int) uint64 {
	return (src[i/7] >> (probeBits * (i % 7))) & (blockBits - 1)
}

// test reports whether the 32-byte key may be in the filter.
func (f *filter) test(key []byte) bool {
	block, src := f.locate(key)
	for i := range f.k {
		p := probe(&src, i)
		if atomic.LoadUint64(&block[p>>6])&(1<<(p&63)) == 0 {
			return false
		}
	}
	return true
}

func (f *filter) add(key []byte) {
	block, src := f.locate(key)
	for i := range f.k {
		p := probe(&src, i)
		atomic.OrUint64(&block[p>>6], 1<<(p&63))
	}
}

// testPacked appends to dst the positions of the 32-byte keys in packed that
// may be present. It first loads every key's block, a window at a time, and
// only then tests them: the loads are independent, so the CPU overlaps their
// cache misses instead of waiting out each one in turn.
func (f *filter) testPacked(packed []byte, dst []int32) []int32 {
	const window = 32 // blocks touched ahead: 2 KiB, well within L1
	n := len(packed) / 32
	for lo := 0; lo < n; lo += window {
		hi := min(lo+window, n)
		for i := lo; i < hi; i++ {
			_ = atomic.LoadUint64(&f.words[f.blockBase(packed[i*32:])]) // an atomic load is never elided
		}
		for i := lo; i < hi; i++ {
			if f.test(packed[i*32 : (i+1)*32]) {
				dst = append(dst, int32(i))
			}
		}
	}
	return dst
}

// FilterStats describes the Bloom filter.
type FilterStats struct {
	Bits      uint64  // size of the bit set
	Hashes    uint64  // bits set per digest, all in one 512-bit block
	Capacity  uint64  // keys it was sized for
	TargetFPR float64 // false-positive rate it was sized for at Capacity
	Keys      uint64  // distinct digests it holds
	// EstimatedFPR is the theoretical false-positive rate at Keys.
	EstimatedFPR float64
	// FalsePositives counts lookups since Open that the filter passed to
	// Badger for a digest that is not stored.
	FalsePositives uint64
}

func (f *filter) stats(keys uint64) FilterStats {
	return FilterStats{Bits: f.blocks * blockBits, Hashes: uint64(f.k),
		Capacity: f.cap, TargetFPR: f.fpr, Keys: keys, EstimatedFPR: blockedFPR(f.blocks, f.k, keys)}
}

// The filter file: a fixed header, the bit set's own encoding, and a CRC-32C
// of everything before it.
const (
	filterFile    = "breachd.bloom"
	filterMagic   = "BRDBLOOM"
	filterFormat  = 2 // 1 was the bits-and-blooms BloomFilter encoding
	filterHdrSize = 8 + 4 + 8 + 8 + 8 + 8 + 8 + 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// filterHeader ties a saved filter to the data it was built from.
type filterHeader struct {
	dataVersion uint64  // Badger's MaxVersion when the filter was saved
	keys        uint64  // distinct digests in the filter
	capacity    uint64  // keys the filter was sized for
	fpr         float64 // target false-positive rate
	blocks      uint64
	k           uint64
}

func (h filterHeader) marshal() []byte {
	b := make([]byte, 0, filterHdrSize)
	b = append(b, filterMagic...)
	b = binary.BigEndian.AppendUint32(b, filterFormat)
	b = binary.BigEndian.AppendUint64(b, h.dataVersion)
	b = binary.BigEndian.AppendUint64(b, h.keys)
	b = binary.BigEndian.AppendUint64(b, h.capacity)
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(h.fpr))
	b = binary.BigEndian.AppendUint64(b, h.blocks)
	b = binary.BigEndian.AppendUint64(b, h.k)
	return b
}

// save writes the filter atomically: temp file, fsync, rename, fsync dir.
// No digest may be added while it runs (callers hold the import token, or
// are closing the store).
func (f *filter) save(dir string, h filterHeader) error {
	h.capacity, h.fpr, h.blocks, h.k = f.cap, f.fpr, f.blocks, uint64(f.k)
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
	if _, err := f.set.WriteTo(bw); err != nil {
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

// loadFilter reads a saved filter and its header, verifying the checksum as
// it streams the file into the bit set (a 100M-key filter is 190 MB: it is
// not read into memory twice).
func loadFilter(dir string) (*filter, filterHeader, error) {
	var h filterHeader
	file, err := os.Open(filepath.Join(dir, filterFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, h, errNoFilter
	}
	if err != nil {
		return nil, h, err
	}
	defer file.Close()
	crc := crc32.New(castagnoli)
	r := io.TeeReader(bufio.NewReaderSize(file, 1<<20), crc)
	b := make([]byte, filterHdrSize)
	if _, err := io.ReadFull(r, b); err != nil || string(b[:8]) != filterMagic {
		return nil, h, errors.New("not a filter file")
	}
	if v := binary.BigEndian.Uint32(b[8:]); v != filterFormat {
		return nil, h, fmt.Errorf("format %d, want %d", v, filterFormat)
	}
	h.dataVersion = binary.BigEndian.Uint64(b[12:])
	h.keys = binary.BigEndian.Uint64(b[20:])
	h.capacity = binary.BigEndian.Uint64(b[28:])
	h.fpr = math.Float64frombits(binary.BigEndian.Uint64(b[36:]))
	h.blocks = binary.BigEndian.Uint64(b[44:])
	h.k = binary.BigEndian.Uint64(b[52:])
	if h.k < 1 || h.k > maxProbes || h.blocks == 0 || h.blocks > 1<<40 {
		return nil, h, fmt.Errorf("bad shape: %d blocks, %d probes", h.blocks, h.k)
	}
	if st, err := file.Stat(); err != nil || st.Size() != int64(filterHdrSize+8+h.blocks*blockBits/8+4) {
		return nil, h, errors.New("truncated or oversized")
	}
	// ReadFrom fills the words it is given when they are large enough.
	set := bitset.From(makeWords(h.blocks * blockWords))
	if _, err := set.ReadFrom(r); err != nil {
		return nil, h, fmt.Errorf("decode: %w", err)
	}
	words := set.Words()
	if uint64(len(words)) != h.blocks*blockWords {
		return nil, h, fmt.Errorf("bit set of %d words, want %d", len(words), h.blocks*blockWords)
	}
	var sum [4]byte
	want := crc.Sum32()
	if _, err := io.ReadFull(r, sum[:]); err != nil || binary.BigEndian.Uint32(sum[:]) != want {
		return nil, h, errors.New("checksum mismatch")
	}
	f := &filter{set: set, words: words, blocks: h.blocks, k: int(h.k), cap: h.capacity, fpr: h.fpr}
	return f, h, nil
}
