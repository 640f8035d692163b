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

	"github.com/bits-and-blooms/bloom/v3"

	"github.com/breachd/breachd/internal/atomicfile"
)

// filter is a cache-line-blocked Bloom filter over account digests: a
// bits-and-blooms BloomFilter whose k bit locations for a digest all fall in
// one 512-bit block (a 64-byte cache line), so a test touches one cache line
// however large the filter grows.
//
// Digests are SHA-256 outputs, already uniformly random, so the filter hashes
// nothing: the first 8 bytes pick the block, and each of the next three
// 8-byte words a round of eight locations, one in each of the block's eight
// 64-bit words (its 6-bit groups, low first). A filter tests k = 8, 16 or
// 24 locations: one, two or three rounds.
//
// One location a word (format 5) rather than nine-bit locations anywhere in
// the block (format 4): the test is eight independent shifts of words at
// fixed places, with no loop, and the absent lookup took 0.76-0.89 of the
// time in an interleaved A/B, at the same false-positive rate within 7% for
// the same bits (bench/README.md).
//
// A published filter (stored in corpus.filter) is shared by readers
// without locks, and only ever gains bits: the change holding the import
// token adds its keys to it in place (addLive, atomic), before they are
// committed. A filter holding more keys than are committed is exact all
// the same (a "maybe" is confirmed in the rows), so a reader sees the
// bits of keys still being imported, or of an import abandoned since,
// and answers right. Only a new filter (a first import's, one rebuilt
// larger) is filled privately (add) and published whole.
//
// Adding in place, rather than to a private copy published at the
// commit, saves a second filter's memory for as long as any change runs
// (4.6 GiB at 2 billion hashes) and its copy at the start of every import
// and replicated delta (BenchmarkSmallImport).
type filter struct {
	bf     *bloom.BloomFilter
	words  []uint64 // bf's bit set: blocks*blockWords words, 2 MiB aligned
	blocks uint64
	k      int
	cap    uint64  // keys the filter was sized for
	fpr    float64 // target false-positive rate at cap

	// dirty marks, a bit a block, the blocks addLive changed since the
	// filter was last saved (1/512 of the filter's size), and nDirty
	// counts them: the next save logs them (filterlog.go). Only the change
	// holding the import token touches them.
	dirty  []uint64
	nDirty int
}

const (
	blockBits  = 512
	blockWords = blockBits / 64
	wordBits   = 6 // log2(64): a location's bit in its word
	maxRounds  = 3 // rounds of blockWords locations: one source word of the key each
	maxProbes  = maxRounds * blockWords
)

// newFilter sizes an empty filter for capacity keys at false-positive rate fpr.
func newFilter(capacity uint64, fpr float64) *filter {
	capacity = max(capacity, 1024)
	blocks, k := blockedSize(capacity, fpr)
	return filterOver(makeWords(blocks*blockWords), blocks, k, capacity, fpr)
}

// filterOver wraps words (not reset) as a filter of the given shape.
func filterOver(words []uint64, blocks uint64, k int, capacity uint64, fpr float64) *filter {
	bf := bloom.FromWithM(words, uint(blocks*blockBits), uint(k))
	return &filter{bf: bf, words: words, blocks: blocks, k: k, cap: capacity, fpr: fpr}
}

// blockedSize returns the fewest blocks, and the probe count, that keep the
// false-positive rate at n keys at or under fpr. A blocked filter needs more
// bits than a plain one (keys crowd some blocks), so the search starts from
// the plain filter's size, bloom.EstimateParameters, and grows it under the
// blocked model.
func blockedSize(n uint64, fpr float64) (blocks uint64, k int) {
	n = max(n, 1)
	plain, _ := bloom.EstimateParameters(uint(n), fpr)
	floor := max(uint64(plain)/blockBits, 1)
	for kk := blockWords; kk <= maxProbes; kk += blockWords {
		// The rate falls as blocks grow: binary search the smallest count.
		lo, hi := floor, max(n*64/blockBits+1, floor) // 64 bits per key is always enough
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
	if blocks == 0 { // fpr below what 24 probes reach at 64 bits per key
		return n*64/blockBits + 1, maxProbes
	}
	return blocks, k
}

// blockedFPR is the false-positive rate of a blocked filter with the given
// shape holding n keys: the rate of a one-block filter, averaged over the
// Poisson-distributed number of keys that land in a block. In a block of j
// keys each word holds k/8 bits of every key, so a given bit of it is set
// with probability 1-(63/64)^(j*k/8), and an absent key passes when all k of
// its bits are.
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
		set := 1 - math.Pow(1-1.0/64, float64(j*k/blockWords))
		sum += p * math.Pow(set, float64(k))
	}
	return sum
}

// blockWord returns the index of the first word of the key's block.
func (f *filter) blockWord(key []byte) uint64 {
	// Big-endian, so that keys added in order (a Pwned Passwords file, a
	// bulk load's merged runs) fill the filter's blocks in order: with the
	// little-endian word every add was a cache miss, 15% of a password
	// import's CPU (format 3; 4 since).
	hi, _ := bits.Mul64(binary.BigEndian.Uint64(key), f.blocks)
	return hi * blockWords
}

// block returns the key's block, one cache line of bf's bit set, read
// directly (no method call, bound or pointer chain per location).
func (f *filter) block(key []byte) *[blockWords]uint64 {
	first := f.blockWord(key)
	return (*[blockWords]uint64)(f.words[first : first+blockWords])
}

// test reports whether the 32-byte key may be in the filter: its k
// locations, all in its block, are tested on the BloomFilter's bit set one
// cache line at a time. TestLocations would reduce each modulo the
// filter's size, a division before every load; that made the absent
// lookup 25-85% slower (bench/README.md). Every location is tested,
// without a branch: an absent key's first clear bit comes at an
// unpredictable place, and the mispredicted exit cost more than the tests
// after it. The rounds' branches go the same way for every key.
func (f *filter) test(key []byte) bool {
	_ = key[31]
	blk := f.block(key)
	miss := roundMiss(blk, binary.LittleEndian.Uint64(key[8:]))
	if f.k > blockWords {
		miss |= roundMiss(blk, binary.LittleEndian.Uint64(key[16:]))
		if f.k > 2*blockWords {
			miss |= roundMiss(blk, binary.LittleEndian.Uint64(key[24:]))
		}
	}
	return miss&1 == 0
}

// roundMiss has bit 0 set if any of the round's eight locations, one a
// word, the bits of s six at a time, is clear in blk. The words are
// loaded atomically, as addLive may be setting bits meanwhile: on amd64
// and arm64 an atomic load is a plain load.
func roundMiss(blk *[blockWords]uint64, s uint64) uint64 {
	return ^atomic.LoadUint64(&blk[0])>>(s&63) | ^atomic.LoadUint64(&blk[1])>>(s>>6&63) |
		^atomic.LoadUint64(&blk[2])>>(s>>12&63) | ^atomic.LoadUint64(&blk[3])>>(s>>18&63) |
		^atomic.LoadUint64(&blk[4])>>(s>>24&63) | ^atomic.LoadUint64(&blk[5])>>(s>>30&63) |
		^atomic.LoadUint64(&blk[6])>>(s>>36&63) | ^atomic.LoadUint64(&blk[7])>>(s>>42&63)
}

// masks returns the key's bits in each word of its block.
func (f *filter) masks(key []byte) (m [blockWords]uint64) {
	for r := range f.k / blockWords {
		s := binary.LittleEndian.Uint64(key[8+8*r:])
		for w := range m {
			m[w] |= 1 << (s >> (wordBits * w) & 63)
		}
	}
	return m
}

// add sets the key's bits. Only for a filter no lookup reads yet. It
// writes the words as test reads them: BitSet.Set's bounds and growth
// checks were 12% of a Pwned Passwords import's CPU.
func (f *filter) add(key []byte) {
	_ = key[31]
	blk := f.block(key)
	m := f.masks(key)
	for w := range blk {
		blk[w] |= m[w]
	}
}

// put sets the key's bits: with addLive if the filter is published (live),
// with add if no lookup reads it yet.
func (f *filter) put(key []byte, live bool) {
	if live {
		f.addLive(key)
	} else {
		f.add(key)
	}
}

// addLive sets the key's bits in a published filter, which lookups read
// meanwhile. Only the change holding the import token calls it, so adds
// never race each other; a word whose bits are all set already (every
// word of a key imported again) is only loaded.
func (f *filter) addLive(key []byte) {
	_ = key[31]
	blk := f.block(key)
	m := f.masks(key)
	changed := false
	for w := range blk {
		if atomic.LoadUint64(&blk[w])&m[w] != m[w] {
			atomic.OrUint64(&blk[w], m[w])
			changed = true
		}
	}
	if changed {
		f.markDirty(f.blockWord(key) / blockWords)
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
			_ = atomic.LoadUint64(&f.words[f.blockWord(packed[i*32:])]) // an atomic load is never elided
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
	Keys      uint64  // distinct committed digests it holds
	// EstimatedFPR is the theoretical false-positive rate at Keys and
	// the keys of abandoned changes the filter holds.
	EstimatedFPR float64
	// FalsePositives counts lookups since Open that the filter passed to
	// Badger for a digest that is not stored.
	FalsePositives uint64
}

func (f *filter) stats(keys uint64) FilterStats {
	return FilterStats{Bits: f.blocks * blockBits, Hashes: uint64(f.k),
		Capacity: f.cap, TargetFPR: f.fpr, Keys: keys, EstimatedFPR: blockedFPR(f.blocks, f.k, keys)}
}

// The filter file: a fixed header, the BloomFilter's own encoding (WriteTo),
// and a CRC-32C of everything before it.
const (
	filterFile    = "breachd.bloom"
	filterMagic   = "BRDBLOOM"
	filterFormat  = 5 // 4: nine-bit locations anywhere in the block; 3: a key's block from its first word little-endian; 2: header and bare bit set; 1: the BloomFilter with murmur3 hashing
	filterHdrSize = 8 + 4 + 8 + 8 + 8 + 8 + 8 + 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// filterHeader ties a saved filter to the corpus it was built from.
type filterHeader struct {
	corpusVersion uint64  // the corpus version whose committed digests it holds
	keys          uint64  // distinct committed digests in the filter
	capacity      uint64  // keys the filter was sized for
	fpr           float64 // target false-positive rate
	blocks        uint64
	k             uint64
}

func (h filterHeader) marshal() []byte {
	b := make([]byte, 0, filterHdrSize)
	b = append(b, filterMagic...)
	b = binary.BigEndian.AppendUint32(b, filterFormat)
	b = binary.BigEndian.AppendUint64(b, h.corpusVersion)
	b = binary.BigEndian.AppendUint64(b, h.keys)
	b = binary.BigEndian.AppendUint64(b, h.capacity)
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(h.fpr))
	b = binary.BigEndian.AppendUint64(b, h.blocks)
	b = binary.BigEndian.AppendUint64(b, h.k)
	return b
}

// fileSize is the size of a saved filter of this shape: header, m and k,
// the bit set's length and words, checksum.
func (h filterHeader) fileSize() int64 {
	return int64(filterHdrSize + 8 + 8 + 8 + h.blocks*blockBits/8 + 4)
}

// save replaces the saved filter (atomicfile: a crash leaves the old one
// or the new one, whole), and returns what names this save.
func (f *filter) save(dir string, h filterHeader) (filterID, error) {
	h.capacity, h.fpr, h.blocks, h.k = f.cap, f.fpr, f.blocks, uint64(f.k)
	id := filterID{version: h.corpusVersion}
	err := atomicfile.Write(filepath.Join(dir, filterFile), 0o600, func(w io.Writer) error {
		crc := crc32.New(castagnoli)
		bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 1<<20)
		if _, err := bw.Write(h.marshal()); err != nil {
			return err
		}
		if _, err := f.bf.WriteTo(bw); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		reach("filter-written")
		id.crc = crc.Sum32()
		_, err := w.Write(binary.BigEndian.AppendUint32(nil, id.crc))
		return err
	}, atomicfile.AfterRename(func() { reach("filter-renamed") }))
	return id, err
}

// crashPoint is nil except in the crash harness's child process (set
// through export_test.go), where it kills the process at a named moment
// that a kill from outside would rarely hit: inside a filter save.
var crashPoint func(name string)

func reach(name string) {
	if crashPoint != nil {
		crashPoint(name)
	}
}

var (
	errNoFilter     = errors.New("no saved filter")
	errFilterFormat = errors.New("saved filter has another layout") // an older build's: rebuilt, never read
)

// loadFilter reads a saved filter and its header, verifying the checksum as
// it streams the file. The library's ReadFrom decodes the filter; the bits
// are then copied into 2 MiB-aligned memory (see makeWords).
func loadFilter(dir string) (*filter, filterHeader, filterID, error) {
	f, h, crc, err := readFilter(dir)
	return f, h, filterID{version: h.corpusVersion, crc: crc}, err
}

func readFilter(dir string) (*filter, filterHeader, uint32, error) {
	var h filterHeader
	file, err := os.Open(filepath.Join(dir, filterFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, h, 0, errNoFilter
	}
	if err != nil {
		return nil, h, 0, err
	}
	defer file.Close()
	crc := crc32.New(castagnoli)
	r := io.TeeReader(bufio.NewReaderSize(file, 1<<20), crc)
	b := make([]byte, filterHdrSize)
	if _, err := io.ReadFull(r, b); err != nil || string(b[:8]) != filterMagic {
		return nil, h, 0, errors.New("not a filter file")
	}
	if v := binary.BigEndian.Uint32(b[8:]); v != filterFormat {
		return nil, h, 0, fmt.Errorf("%w: format %d, want %d", errFilterFormat, v, filterFormat)
	}
	h.corpusVersion = binary.BigEndian.Uint64(b[12:])
	h.keys = binary.BigEndian.Uint64(b[20:])
	h.capacity = binary.BigEndian.Uint64(b[28:])
	h.fpr = math.Float64frombits(binary.BigEndian.Uint64(b[36:]))
	h.blocks = binary.BigEndian.Uint64(b[44:])
	h.k = binary.BigEndian.Uint64(b[52:])
	if h.k < blockWords || h.k > maxProbes || h.k%blockWords != 0 || h.blocks == 0 || h.blocks > 1<<40 {
		return nil, h, 0, fmt.Errorf("bad shape: %d blocks, %d probes", h.blocks, h.k)
	}
	// The size check comes before decoding, so a corrupt length inside the
	// encoding can never make ReadFrom allocate more than the file holds.
	if st, err := file.Stat(); err != nil || st.Size() != h.fileSize() {
		return nil, h, 0, errors.New("truncated or oversized")
	}
	var read bloom.BloomFilter
	if _, err := read.ReadFrom(r); err != nil {
		return nil, h, 0, fmt.Errorf("decode: %w", err)
	}
	if read.Cap() != uint(h.blocks*blockBits) || read.K() != uint(h.k) {
		return nil, h, 0, fmt.Errorf("encoded shape m=%d k=%d does not match the header", read.Cap(), read.K())
	}
	var sum [4]byte
	want := crc.Sum32()
	if _, err := io.ReadFull(r, sum[:]); err != nil || binary.BigEndian.Uint32(sum[:]) != want {
		return nil, h, 0, errors.New("checksum mismatch")
	}
	f := filterOver(makeWords(h.blocks*blockWords), h.blocks, int(h.k), h.capacity, h.fpr)
	if err := f.bf.Merge(&read); err != nil {
		return nil, h, 0, fmt.Errorf("copy bloom filter: %w", err)
	}
	return f, h, want, nil
}
