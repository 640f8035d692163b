package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/internal/atomicfile"
)

// The index is a read-optimised copy of the corpus for the lookups the
// filter lets through: every digest in Badger, sorted, each with the id of
// its membership set (the few distinct lists of segments), in one file
// mapped into memory. A lookup reads one directory word and one or two
// cache lines of records instead of walking Badger's memtables and levels,
// and answers with a breach list shared by every digest of the same set, so
// it allocates nothing.
//
// Badger stays the store of record (with, for a password corpus, its base:
// base.go); the index is built from a Badger snapshot in the background
// (the file is replaced atomically), and used only while it is current:
// built at a corpus version no older than the last committed import, or
// followed by the rows of every import since (a view's delta, below).
// Deletes and catalogue updates do not make it stale: a set names
// segments, and each lookup resolves them against the catalogue it
// loaded, so a deleted breach's segments simply resolve to nothing. Until
// a rebuild after an import that could not be merged completes, lookups
// confirm in Badger as before. A crash leaves at worst a stale index
// (unused) or a temporary file (collected).
//
// File layout, little-endian:
//
//	header   indexHdrSize bytes: magic, corpus version, records, directory bits, sets, sets offset
//	records  n x 36 bytes: digest (32), set id (uint32)
//	padding  to a multiple of 4
//	dir      (1<<bits)+1 uint32: dir[b] is the first record whose digest's top bits are >= b
//	sets     per set: segment count (uint32), then the segment ids as stored in Badger (4 bytes each, BE)
//
// Memory: 36 bytes a digest plus about one for the directory, in mapped
// file pages (page cache, reclaimable), none anonymous; disk the same.
//
// A counted kind's index (password hashes, magic indexMagicCounted) is the
// same file with other records and one set:
//
//	records  n x (key size - skip + 3) bytes: the key without its first
//	         skip bytes (the directory implies them), then the count the
//	         catalogue answered (3 bytes; countEscape3: too large, see
//	         the overflow)
//	sets     one: the segments whose counts it holds
//	overflow the counts too large for their records: how many (uint32),
//	         then each one's record number (uint32) and count (uint64),
//	         in record order
//
// The directory has 1<<16 to 1<<24 buckets (about indexBucket records
// each, up to 16.7M buckets); skip is 3 at 1<<24 buckets, else 2. A
// record is then 20 bytes a SHA-1 hash from 33.5M hashes (21 below), 16
// or 17 an NTLM one, against pwnedpass's 19 (17 key bytes and a 16-bit
// count that loses precision); every count is exact. Files of the first
// counted layout (indexMagicCounted1: skip 2, 4-byte counts whose all
// ones meant "read Badger", no overflow, any directory) still load.
//
// It holds only the keys whose count is not 0, so a range is one
// directory read and one contiguous read of the records. A count is the
// highest of the committed entries
// the catalogue it was built at saw, so the index answers only for a
// catalogue whose visible segments are exactly those: a deleted release,
// or one committed since, makes it stale (rebuilt), where an email
// index's sets simply resolve to the breaches visible now. (A replica can
// receive a release's rows before the backup that commits it, which then
// changes no row.)

const (
	indexFile    = "breachd.index"
	indexMagic   = "BRIDX001"
	indexHdrSize = 48
	indexRecSize = breachd.DigestSize + 4
	// indexBucket is the mean number of records per directory bucket: the
	// records a lookup scans (36 bytes each: two to four cache lines).
	indexBucket = 4

	indexMagicCounted  = "BRPWX002"
	indexMagicCounted1 = "BRPWX001" // skip 2, 4-byte counts: still read
	// A counted kind's directory has 1<<countedMinBits to
	// 1<<countedMaxBits buckets; its records leave out 2 key bytes, or 3
	// with 1<<countedMaxBits buckets.
	countedMinBits = 16
	countedMaxBits = 24
	// countEscape3 in a record's 3 bytes sends its count to the overflow;
	// countEscape in the first layout's 4 bytes sent it to Badger.
	countEscape3 = 1<<24 - 1
	countEscape  = math.MaxUint32
	// countUnknown is what the index answers for a count it does not hold
	// (a first-layout file's countEscape): read Badger. Above any count
	// (breachd.MaxPasswordCount).
	countUnknown = math.MaxUint64
	overflowSize = 12
)

// indexLayout is the shape of kind k's index file with a directory of
// 1<<bits buckets, as written now: its magic, the key bytes a record
// leaves out, the bytes of the record's payload (an email's set id, a
// password's count) and of the whole record.
func (k *kind) indexLayout(bits uint) (magic string, skip, payload, recSize uint64) {
	if !k.counted {
		return indexMagic, 0, 4, indexRecSize
	}
	skip = 2
	if bits >= countedMaxBits {
		skip = 3
	}
	return indexMagicCounted, skip, 3, uint64(k.keySize) - skip + 3
}

// indexBits is the directory size of kind k's index of about n records.
func (k *kind) indexBits(n uint64) uint {
	b := indexBits(n)
	if k.counted {
		b = min(max(b, countedMinBits), countedMaxBits)
	}
	return b
}

// index is an open index file. It is immutable; retire unmaps it once no
// lookup can be reading it.
type index struct {
	version uint64 // corpus version it was built at
	n       uint64
	bits    uint
	counted bool   // a counted kind's: records of a key and a count
	skip    uint64 // the key bytes a counted record leaves out
	klen    uint64 // a counted record's key bytes
	cw      uint64 // a counted record's count bytes: 3, or 4 in the first layout
	rsz     uint64 // a counted record's bytes
	over    []byte // a counted index's overflow entries, 12 bytes each
	recs    []byte
	dir     []byte   // (1<<bits)+1 little-endian uint32
	sets    [][]byte // membership values, as in Badger
	mapped  []byte   // the whole mapping
}

// find returns the set id of digest d, and whether it is in the index.
func (x *index) find(d *breachd.Digest) (uint32, bool) {
	if x.n == 0 {
		return 0, false
	}
	head := binary.BigEndian.Uint64(d[:8])
	b := x.bucket(d[:])
	lo := uint64(binary.LittleEndian.Uint32(x.dir[b*4:]))
	hi := uint64(binary.LittleEndian.Uint32(x.dir[b*4+4:]))
	for i := lo; i < hi; i++ {
		r := x.recs[i*indexRecSize : i*indexRecSize+indexRecSize : i*indexRecSize+indexRecSize]
		rh := binary.BigEndian.Uint64(r[:8])
		if rh < head {
			continue
		}
		if rh > head {
			return 0, false
		}
		switch bytes.Compare(r[8:breachd.DigestSize], d[8:]) {
		case 0:
			return binary.LittleEndian.Uint32(r[breachd.DigestSize:]), true
		case 1:
			return 0, false
		}
	}
	return 0, false
}

// findBatch answers the digests at positions pos of packed (32 bytes each)
// in order, calling fn for each. Like the filter's testPacked, it first
// touches each digest's directory word and then its first record, a window
// at a time: the loads are independent, so the CPU overlaps their cache
// misses rather than waiting out each one in turn.
func (v *view) findBatch(packed []byte, pos []int32, fn func(i int32, bs []*breachd.CatalogEntry, ok bool)) {
	const window = 16
	x := v.idx
	var touch [window]uint64
	for lo := 0; lo < len(pos); lo += window {
		hi := min(lo+window, len(pos))
		var sum uint64
		for j := lo; j < hi; j++ {
			b := x.bucket(packed[int(pos[j])*breachd.DigestSize:])
			touch[j-lo] = b
			sum += uint64(x.dir[b*4])
		}
		for j := lo; j < hi; j++ {
			r := uint64(binary.LittleEndian.Uint32(x.dir[touch[j-lo]*4:]))
			if r < x.n {
				sum += uint64(x.recs[r*indexRecSize])
			}
		}
		if sum == 1<<63 { // never: the branch keeps the loads
			prefetchSink.Add(1)
		}
		for j := lo; j < hi; j++ {
			bs, ok := v.find((*breachd.Digest)(packed[int(pos[j])*breachd.DigestSize:]))
			fn(pos[j], bs, ok)
		}
	}
}

// prefetchSink makes findBatch's touching loads observable, so the
// compiler keeps them.
var prefetchSink atomic.Uint64

// findCount returns the count a counted kind's index holds for key
// (countUnknown: read Badger), and whether it holds key at all.
func (x *index) findCount(key []byte) (uint64, bool) {
	if x.n == 0 {
		return 0, false
	}
	b := x.bucket(key)
	k := key[x.skip:]
	for i, hi := x.dirAt(b), x.dirAt(b+1); i < hi; i++ {
		r := x.recs[i*x.rsz : (i+1)*x.rsz]
		switch bytes.Compare(r[:x.klen], k) {
		case 0:
			return x.count(i, r), true
		case 1:
			return 0, false
		}
	}
	return 0, false
}

// count reads the count of counted record r, record number i: from the
// overflow if it did not fit; countUnknown if the index does not hold it.
func (x *index) count(i uint64, r []byte) uint64 {
	if x.cw == 4 {
		if n := binary.LittleEndian.Uint32(r[x.klen:]); n != countEscape {
			return uint64(n)
		}
		return countUnknown
	}
	c := r[x.klen : x.klen+3]
	if n := uint64(c[0]) | uint64(c[1])<<8 | uint64(c[2])<<16; n != countEscape3 {
		return n
	}
	return x.overflowCount(i)
}

// overflowCount returns the count of record i from the overflow:
// countUnknown if it is not there (not written by this layout: unreachable).
func (x *index) overflowCount(i uint64) uint64 {
	le := binary.LittleEndian
	n := len(x.over) / overflowSize
	j := sort.Search(n, func(j int) bool { return uint64(le.Uint32(x.over[j*overflowSize:])) >= i })
	if j < n && uint64(le.Uint32(x.over[j*overflowSize:])) == i {
		return le.Uint64(x.over[j*overflowSize+4:])
	}
	return countUnknown
}

// eachInRange calls fn, in ascending order, for every key of a counted
// kind's index whose first 20 bits are prefix, with the whole key rebuilt
// in key (its size) and its count. It calls fn for none and reports false
// if the index does not hold a count of the range (a first-layout file's
// escape): the caller reads Badger.
func (x *index) eachInRange(prefix uint32, key []byte, fn func(key []byte, count uint64)) bool {
	if x.n == 0 {
		return true
	}
	var blo, bhi uint64   // the buckets that hold the range
	whole := x.bits >= 20 // every record of the buckets has the prefix
	if whole {
		s := x.bits - 20
		blo, bhi = uint64(prefix)<<s, uint64(prefix+1)<<s
	} else {
		blo = uint64(prefix) >> (20 - x.bits)
		bhi = blo + 1
	}
	lo, hi := x.dirAt(blo), x.dirAt(bhi)
	nib := byte(prefix & 15)
	recs := x.recs[lo*x.rsz : hi*x.rsz]
	if x.cw == 4 { // a first-layout file: its escaped counts are Badger's
		for i := uint64(0); i < uint64(len(recs)); i += x.rsz {
			if r := recs[i : i+x.rsz]; (whole || r[0]>>4 == nib) && binary.LittleEndian.Uint32(r[x.klen:]) == countEscape {
				return false
			}
		}
	}
	key[0], key[1] = byte(prefix>>12), byte(prefix>>4)
	if x.skip == 3 {
		// 1<<24 buckets: a record's third key byte is its bucket's last.
		i, j := uint64(0), lo // byte offset in recs, record number
		for b := blo; b < bhi; b++ {
			key[2] = byte(b)
			for end := (x.dirAt(b+1) - lo) * x.rsz; i < end; i, j = i+x.rsz, j+1 {
				r := recs[i : i+x.rsz]
				copy(key[3:], r[:x.klen])
				fn(key, x.count(j, r))
			}
		}
		return true
	}
	for i, j := uint64(0), lo; i < uint64(len(recs)); i, j = i+x.rsz, j+1 {
		r := recs[i : i+x.rsz]
		if whole || r[0]>>4 == nib {
			copy(key[2:], r[:x.klen])
			fn(key, x.count(j, r))
		}
	}
	return true
}

// dirAt is directory word b: the first record of bucket b.
func (x *index) dirAt(b uint64) uint64 { return uint64(binary.LittleEndian.Uint32(x.dir[b*4:])) }

// bucket is the directory bucket of the digest at the start of d.
func (x *index) bucket(d []byte) uint64 { return bucketOf(d, x.bits) }

// bucketOf is the directory bucket, of a directory of 1<<bits, of the
// digest at the start of d: its leading bits.
func bucketOf(d []byte, bits uint) uint64 {
	if bits == 0 {
		return 0
	}
	return binary.BigEndian.Uint64(d[:8]) >> (64 - bits)
}

// indexBits is the directory size for about n records.
func indexBits(n uint64) uint {
	if n <= indexBucket {
		return 0
	}
	return min(uint(bits.Len64((n-1)/indexBucket)), 30)
}

var errNoIndex = errors.New("no index")

// loadIndex maps kind k's index file in dir and checks its shape.
func loadIndex(dir string, k *kind) (*index, error) { return loadIndexFile(dir, indexFile, k) }

// loadIndexFile maps file name in dir, an index file of kind k (the lookup
// index, or a password corpus's base: base.go), and checks its shape.
func loadIndexFile(dir, name string, k *kind) (*index, error) {
	f, err := os.Open(filepath.Join(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNoIndex
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() < indexHdrSize {
		return nil, fmt.Errorf("%w: index file of %d bytes", ErrCorrupt, fi.Size())
	}
	m, err := mapFile(f, fi.Size())
	if err != nil {
		return nil, err
	}
	x, err := parseIndex(m, k)
	if err != nil {
		unmapFile(m)
		return nil, err
	}
	return x, nil
}

func parseIndex(m []byte, k *kind) (*index, error) {
	bad := func(what string) (*index, error) {
		return nil, fmt.Errorf("%w: index file: %s", ErrCorrupt, what)
	}
	le := binary.LittleEndian
	x := &index{version: le.Uint64(m[8:]), n: le.Uint64(m[16:]), bits: uint(le.Uint64(m[24:])), mapped: m,
		counted: k.counted}
	nsets, setsOff := le.Uint64(m[32:]), le.Uint64(m[40:])
	if x.bits > 30 || x.n >= 1<<32 {
		return bad("bad header")
	}
	magic, skip, payload, rsz := k.indexLayout(x.bits)
	switch string(m[:8]) {
	case magic:
		if k.counted && (x.bits < countedMinBits || x.bits > countedMaxBits) {
			return bad("bad header")
		}
	case indexMagicCounted1:
		if !k.counted || x.bits < countedMinBits {
			return bad("bad header")
		}
		skip, payload = 2, 4
		rsz = uint64(k.keySize) - skip + payload
	default:
		return bad("bad magic")
	}
	if k.counted && nsets != 1 {
		return bad("bad header")
	}
	x.skip, x.cw, x.rsz, x.klen = skip, payload, rsz, rsz-payload
	recEnd := indexHdrSize + x.n*rsz
	dirOff := (recEnd + 3) &^ 3
	dirEnd := dirOff + ((1<<x.bits)+1)*4
	if dirEnd > setsOff || setsOff > uint64(len(m)) {
		return bad("sections out of bounds")
	}
	x.recs, x.dir = m[indexHdrSize:recEnd], m[dirOff:dirEnd]
	if le.Uint32(x.dir[len(x.dir)-4:]) != uint32(x.n) {
		return bad("directory does not end at the record count")
	}
	p := m[setsOff:]
	for range nsets {
		if len(p) < 4 {
			return bad("truncated sets")
		}
		k := uint64(le.Uint32(p)) * 4
		if uint64(len(p)-4) < k {
			return bad("truncated sets")
		}
		x.sets = append(x.sets, p[4:4+k:4+k])
		p = p[4+k:]
	}
	if k.counted && x.cw == 3 {
		if len(p) < 4 || uint64(len(p)-4) != uint64(le.Uint32(p))*overflowSize {
			return bad("truncated overflow")
		}
		x.over = p[4:]
	}
	return x, nil
}

// indexWriter writes an index file from keys given in ascending order, to
// a temporary file that install renames into place. The bulk load feeds it
// as it writes Badger's tables; buildIndex from a Badger snapshot.
type indexWriter struct {
	c         *corpus // while being written, named so that removeTemps spares it
	dir       string
	name      string // the file's: indexFile, or baseFile
	f         *atomicfile.File
	bw        *bufio.Writer
	kind      *kind
	skip, rsz uint64 // as indexLayout gave them for bits
	payload   uint64
	over      []byte // a counted index's overflow entries
	bits      uint   // of dirWords, sized for the records expected
	dirWords  []uint32
	setIDs    map[string]uint32
	sets      [][]byte
	count     uint64
	next      uint64 // the next directory bucket to fill
	rec       []byte
}

// newIndexWriter starts kind k's index of about n keys in dir. A counted
// kind's holds the counts of segments segs.
func newIndexWriter(dir string, k *kind, n uint64, segs []uint32) (*indexWriter, error) {
	return newIndexFileWriter(dir, indexFile, k, n, segs)
}

// newIndexFileWriter is newIndexWriter for file name in dir: the lookup
// index, or a password corpus's base (base.go). The crash harness's points
// are named after the file: "index-written", "base-renamed".
func newIndexFileWriter(dir, name string, k *kind, n uint64, segs []uint32) (*indexWriter, error) {
	point := strings.TrimPrefix(filepath.Ext(name), ".")
	f, err := atomicfile.Create(filepath.Join(dir, name), 0o600, atomicfile.AfterRename(func() { reach(point + "-renamed") }))
	if err != nil {
		return nil, err
	}
	w := &indexWriter{dir: dir, name: name, f: f, bw: bufio.NewWriterSize(f, 1<<20), kind: k, bits: k.indexBits(n), setIDs: map[string]uint32{}}
	_, w.skip, w.payload, w.rsz = k.indexLayout(w.bits)
	w.rec = make([]byte, w.rsz)
	w.dirWords = make([]uint32, (1<<w.bits)+1)
	if k.counted {
		var set []byte
		for _, id := range segs {
			set = binary.BigEndian.AppendUint32(set, id)
		}
		w.sets = [][]byte{set}
	}
	if _, err := w.bw.Write(make([]byte, indexHdrSize)); err != nil {
		w.abort()
		return nil, err
	}
	return w, nil
}

// add appends digest d (32 bytes, above the last one) with membership val.
func (w *indexWriter) add(d, val []byte) error {
	id, ok := w.setIDs[string(val)]
	if !ok {
		id = uint32(len(w.sets))
		w.setIDs[string(val)] = id
		w.sets = append(w.sets, bytes.Clone(val))
	}
	return w.put(d, id)
}

// addCount appends a counted kind's key (above the last one) with count
// n; a key of count 0 is left out.
func (w *indexWriter) addCount(key []byte, n uint64) error {
	if n == 0 {
		return nil
	}
	if n >= countEscape3 {
		w.over = binary.LittleEndian.AppendUint32(w.over, uint32(w.count))
		w.over = binary.LittleEndian.AppendUint64(w.over, n)
	}
	return w.put(key, uint32(min(n, countEscape3)))
}

// put appends a record of key with payload, in w.payload bytes.
func (w *indexWriter) put(key []byte, payload uint32) error {
	if w.count >= 1<<32-1 {
		return errors.New("index: more than 2^32 keys")
	}
	n := copy(w.rec, key[w.skip:])
	var p [4]byte
	binary.LittleEndian.PutUint32(p[:], payload)
	copy(w.rec[n:], p[:w.payload])
	if _, err := w.bw.Write(w.rec); err != nil {
		return err
	}
	for bucket := bucketOf(key, w.bits); w.next <= bucket; w.next++ {
		w.dirWords[w.next] = uint32(w.count)
	}
	w.count++
	return nil
}

// finish writes the directory, sized for the records written, the sets and
// a header naming corpus version v; install then puts the file in place.
func (w *indexWriter) finish(v uint64) error {
	for ; w.next < uint64(len(w.dirWords)); w.next++ {
		w.dirWords[w.next] = uint32(w.count)
	}
	dir, bits := w.dirWords, w.kind.indexBits(w.count)
	if w.kind.counted {
		// The records left out the key bytes the first directory size
		// implied: keep a directory that implies as many.
		if w.skip == 3 {
			bits = countedMaxBits
		} else {
			bits = min(bits, countedMaxBits-1)
		}
	}
	switch {
	case bits < w.bits: // fewer records than expected: every 2^k-th word
		dir = make([]uint32, (1<<bits)+1)
		for b := range dir {
			dir[b] = w.dirWords[uint64(b)<<(w.bits-bits)]
		}
	case bits > w.bits: // more: read the records back
		var err error
		if dir, err = w.rebucket(bits); err != nil {
			return err
		}
	}
	le := binary.LittleEndian
	off := uint64(indexHdrSize) + w.count*w.rsz
	if pad := (4 - off%4) % 4; pad > 0 {
		w.bw.Write(make([]byte, pad))
		off += pad
	}
	var w4 [4]byte
	for _, d := range dir {
		le.PutUint32(w4[:], d)
		w.bw.Write(w4[:])
	}
	setsOff := off + uint64(len(dir))*4
	for _, s := range w.sets {
		le.PutUint32(w4[:], uint32(len(s)/4))
		w.bw.Write(w4[:])
		w.bw.Write(s)
	}
	if w.kind.counted {
		le.PutUint32(w4[:], uint32(len(w.over)/overflowSize))
		w.bw.Write(w4[:])
		w.bw.Write(w.over)
	}
	if err := w.bw.Flush(); err != nil {
		return err
	}
	hdr := make([]byte, indexHdrSize)
	magic, _, _, _ := w.kind.indexLayout(bits)
	copy(hdr, magic)
	le.PutUint64(hdr[8:], v)
	le.PutUint64(hdr[16:], w.count)
	le.PutUint64(hdr[24:], uint64(bits))
	le.PutUint64(hdr[32:], uint64(len(w.sets)))
	le.PutUint64(hdr[40:], setsOff)
	if _, err := w.f.WriteAt(hdr, 0); err != nil {
		return err
	}
	reach(strings.TrimPrefix(filepath.Ext(w.name), ".") + "-written")
	return nil // install syncs it
}

// rebucket returns the directory of 1<<bits buckets (more than w.bits) of
// the records written, reading them back from the file: a stream whose
// size was not known, or was underestimated.
func (w *indexWriter) rebucket(bits uint) ([]uint32, error) {
	if err := w.bw.Flush(); err != nil {
		return nil, err
	}
	out := make([]uint32, (1<<bits)+1)
	var next, old uint64 // the next bucket to fill; the bucket of record i in dirWords
	buf := make([]byte, (1<<20)/w.rsz*w.rsz)
	for i := uint64(0); i < w.count; {
		m := min(w.count-i, uint64(len(buf))/w.rsz)
		chunk := buf[:m*w.rsz]
		if _, err := w.f.ReadAt(chunk, int64(indexHdrSize+i*w.rsz)); err != nil {
			return nil, err
		}
		for j := uint64(0); j < m; j, i = j+1, i+1 {
			for uint64(w.dirWords[old+1]) <= i {
				old++
			}
			// The record's first 64 key bits: those it left out are
			// its bucket's first ones.
			head := binary.BigEndian.Uint64(chunk[j*w.rsz:])
			if w.skip > 0 {
				head = old>>(w.bits-uint(8*w.skip))<<(64-8*w.skip) | head>>(8*w.skip)
			}
			for b := head >> (64 - bits); next <= b; next++ {
				out[next] = uint32(i)
			}
		}
	}
	for ; next < uint64(len(out)); next++ {
		out[next] = uint32(w.count)
	}
	return out, nil
}

// install puts the finished file in place and opens it. Only once the
// corpus version it names is committed: an index must never claim a
// version whose keys it may lack.
func (w *indexWriter) install() (*index, error) {
	if err := w.f.Commit(); err != nil {
		return nil, err
	}
	return loadIndexFile(w.dir, w.name, w.kind)
}

// indexState is an indexed corpus's lookup index: the view lookups read,
// and the machinery that rebuilds it.
type indexState struct {
	// view is read without locks; mu is held for reading while a lookup
	// reads the index it names, so that retire can unmap a replaced one.
	// viewMu orders view changes.
	view    atomic.Pointer[view]
	mu      sync.RWMutex
	viewMu  sync.Mutex
	current *index // the index of the view, or the last published one; under viewMu
	// pending is a change's rows to merge into the index at the next
	// build (changes.go); under viewMu. Its base view's index is current.
	pending *pendingMerge
	// buildMu makes builds one at a time: a build reads the index it
	// replaces (a merge, a compaction), which another's publishing would
	// unmap.
	buildMu sync.Mutex
	kick    chan struct{} // asks indexLoop for a rebuild
	// settle asks indexLoop to compact a view's delta once no change has
	// merged another for a while (Options.indexSettle): a burst of small
	// changes costs one rewrite of the file.
	settle chan struct{}
	// Index builds run beside collections (which hold only the import
	// token against changes): removeTemps leaves alone the temporary file
	// a build is writing, named here while it is.
	tmpMu   sync.Mutex
	writing string
	// overlayFull is 1 + the import version at which Badger held more rows
	// than a base view takes (base.go): the rebuilds at that version write
	// a whole index without reading them again (open tries first, then the
	// background rebuild).
	overlayFull atomic.Uint64
}

// newIndexWriter starts an index of about n keys (a counted kind's: of
// the counts of segments segs), its temporary file named as being written
// until doneWriting, so that removeTemps spares it.
func (c *corpus) newIndexWriter(n uint64, segs []uint32) (*indexWriter, error) {
	c.index.tmpMu.Lock()
	defer c.index.tmpMu.Unlock()
	w, err := newIndexWriter(c.dir, c.kind, n, segs)
	if err != nil {
		return nil, err
	}
	w.c = c
	c.index.writing = w.f.Name()
	return w, nil
}

func (c *corpus) doneWriting(w *indexWriter) {
	c.index.tmpMu.Lock()
	if c.index.writing == w.f.Name() {
		c.index.writing = ""
	}
	c.index.tmpMu.Unlock()
}

// writingIndex names the temporary index file a build is writing, if any.
func (c *corpus) writingIndex() string {
	if c.index == nil {
		return ""
	}
	c.index.tmpMu.Lock()
	defer c.index.tmpMu.Unlock()
	return c.index.writing
}

// abort drops the unfinished file.
func (w *indexWriter) abort() { w.f.Abort() }

// writeIndex writes the index of the rows as catalogue cat sees them (on a
// writer, a snapshot taken after cat was published: at its version or
// later), and opens it. About n digests are expected (it sizes
// the directory). The file replaces the previous one atomically.
func (c *corpus) writeIndex(ctx context.Context, cat *catalog, n uint64) (*index, error) {
	w, err := c.newIndexWriter(n, cat.segmentIDs())
	if err != nil {
		return nil, err
	}
	defer c.doneWriting(w)
	err = c.eachKey(ctx, cat, 0, func(key, val []byte, _ *badger.Item) error {
		if c.kind.counted {
			return w.addCount(key, cat.count(val))
		}
		return w.add(key, val)
	})
	if err == nil {
		err = w.finish(cat.version)
	}
	if err != nil {
		w.abort()
		return nil, err
	}
	return w.install()
}

// view pairs the current index with the catalogue it answers for: its sets
// resolved to that catalogue's visible breaches, sorted by name, shared by
// every answer (callers must not change them). A lookup uses the view only
// if its catalogue is the one the lookup loaded.
//
// The rows each import wrote (up to a bound), and on a replica the rows
// each applied backup changed, are merged into the view as a delta over
// the index (mergeDelta), in time proportional to the change, instead of
// a rebuild from Badger after every one; once changes pause
// (compactSoon), or when the delta grows large, the index is rewritten
// from itself and the delta (compactIndex), still without reading Badger.
// The delta lives in memory: a restart before that rebuilds the index it
// left stale. An import's rows past the bound are spilled to runs and
// merged with the file by the next build (changes.go), still without
// reading Badger.
type view struct {
	cat  *catalog
	idx  *index
	sets [][]*breachd.CatalogEntry // by set id; nil: no visible breach
	// delta holds the rows changed since idx was written: each one's value
	// (nil: the row is gone) and its breaches resolved against cat.
	delta map[breachd.Digest]deltaRow
	// over, in a password corpus's base view, is Badger's rows over idx,
	// the base (base.go).
	over *overlay
}

type deltaRow struct {
	val      []byte // the row's value in Badger; nil: deleted
	breaches []*breachd.CatalogEntry
}

// errIndexStale says a counted kind's index counted other segments than
// the catalogue's visible ones: a deleted release (its counts may be that
// release's), or one committed since (on a replica, a release whose rows
// all came before the backup that committed it, so that no row changed
// with the commit: its counts are missing).
var errIndexStale = errors.New("the index counts other segments than the catalogue's")

// answersFor reports whether x may answer for catalogue cat: built at or
// after cat's last import and, a counted kind's, over exactly cat's
// committed segments. newView checks the segments again; the callers that
// only ask (a rebuild that may be skipped) call this.
func (x *index) answersFor(cat *catalog) bool {
	return x.version >= cat.importVersion && (!x.counted || x.countsExactly(cat))
}

// countsExactly reports whether a counted kind's index counted exactly
// cat's committed segments (in the order both list them).
func (x *index) countsExactly(cat *catalog) bool {
	ids := cat.segmentIDs()
	s := x.sets[0]
	if len(s) != 4*len(ids) {
		return false
	}
	for i, id := range ids {
		if binary.BigEndian.Uint32(s[4*i:]) != id {
			return false
		}
	}
	return true
}

func newView(cat *catalog, x *index, delta map[breachd.Digest]deltaRow) (*view, error) {
	if x.counted {
		if !x.countsExactly(cat) {
			return nil, errIndexStale
		}
		return &view{cat: cat, idx: x}, nil
	}
	v := &view{cat: cat, idx: x, sets: make([][]*breachd.CatalogEntry, len(x.sets))}
	for i, s := range x.sets {
		bs, err := cat.resolve(nil, s)
		if err != nil {
			return nil, err
		}
		if len(bs) > 0 {
			v.sets[i] = bs
		}
	}
	if len(delta) > 0 {
		v.delta = make(map[breachd.Digest]deltaRow, len(delta))
		for d, r := range delta {
			if r.val != nil {
				bs, err := cat.resolve(nil, r.val)
				if err != nil {
					return nil, err
				}
				r.breaches = bs
			}
			v.delta[d] = r
		}
	}
	return v, nil
}

// find answers digest d from the view: its visible breaches (shared), and
// whether the view holds d at all (false: a filter false positive).
func (v *view) find(d *breachd.Digest) ([]*breachd.CatalogEntry, bool) {
	if v.delta != nil {
		if r, ok := v.delta[*d]; ok {
			return r.breaches, r.val != nil
		}
	}
	id, ok := v.idx.find(d)
	if !ok {
		return nil, false
	}
	return v.sets[id], true
}

// rows returns a copy of the view's delta without its resolved breaches
// (newView resolves them against another catalogue), with room for more.
func (v *view) rows(more int) map[breachd.Digest]deltaRow {
	delta := make(map[breachd.Digest]deltaRow, len(v.delta)+more)
	for d, r := range v.delta {
		delta[d] = deltaRow{val: r.val}
	}
	return delta
}

// mergeDelta makes the view follow catalogue cat, just published by a
// replica's apply of a backup, or by an import's commit, that changed the
// rows in changes (a value, or nil for a row deleted), if the view was
// current for prev, the catalogue before: the old index and delta plus
// these changes hold every row at cat (the change held the import token
// since prev, so nothing else wrote a row meanwhile). It reports whether
// it could; otherwise the caller rebuilds. A counted kind's view takes no
// delta: its caller merges only backups that changed no row.
func (c *corpus) mergeDelta(prev, cat *catalog, changes map[breachd.Digest][]byte) bool {
	is := c.index
	is.viewMu.Lock()
	defer is.viewMu.Unlock()
	old := is.view.Load()
	if old == nil || old.cat != prev {
		return false
	}
	if old.over != nil {
		// A base view (a replica's base): kept for a backup that changed
		// no row (its callers), if no import committed with it.
		if len(changes) > 0 || !old.over.answersFor(cat) {
			return false
		}
		is.view.Store(&view{cat: cat, idx: old.idx, over: old.over})
		return true
	}
	delta := old.rows(len(changes))
	for d, v := range changes {
		delta[d] = deltaRow{val: v}
	}
	v, err := newView(cat, old.idx, delta)
	if err != nil {
		if !errors.Is(err, errIndexStale) {
			c.log.Warn("merging a backup into the lookup index failed; rebuilding it", "err", err)
		}
		return false
	}
	is.view.Store(v)
	if len(delta) > c.maxDeltaRows(old.idx.n) {
		// Compact: rewrite the index with its delta (outside viewMu).
		defer func() {
			if c.opts.Index == IndexInline {
				c.goBackground(func(ctx context.Context) {
					if c.acquire() == nil {
						c.rebuildIndex(ctx)
						c.release()
					}
				})
				return
			}
			c.kickIndex()
		}()
	}
	return true
}

// maxDeltaRows is how many rows a view's delta over an index of n keys
// takes before it is compacted.
func (c *corpus) maxDeltaRows(n uint64) int {
	if c.opts.maxDelta > 0 {
		return c.opts.maxDelta
	}
	return int(max(n/16, 1<<16))
}

// dropIndexView makes lookups confirm in Badger until an index is built
// again, and has one built (at once with IndexInline): a replica whose
// backup could not be merged into the view. Callers hold acquire.
func (c *corpus) dropIndexView(ctx context.Context) {
	is := c.index
	is.viewMu.Lock()
	is.view.Store(nil)
	is.viewMu.Unlock()
	switch c.opts.Index {
	case IndexInline:
		c.rebuildIndex(ctx)
	case IndexBackground:
		c.kickIndex()
	}
}

// viewCurrentFor reports whether the view answers for catalogue cat now
// (a change that began at cat may merge its rows into it: mergeDelta).
func (c *corpus) viewCurrentFor(cat *catalog) bool {
	v := c.index.view.Load()
	return v != nil && v.cat == cat
}

// currentView returns the view if it answers for catalogue cat, holding
// the index's read lock (the caller calls c.index.mu.RUnlock when done);
// otherwise nil, with the lock released.
func (c *corpus) currentView(cat *catalog) *view {
	if c.index == nil {
		return nil
	}
	c.index.mu.RLock()
	if v := c.index.view.Load(); v != nil && v.cat == cat {
		return v
	}
	c.index.mu.RUnlock()
	return nil
}

// refreshView makes the view follow catalogue cat, which the caller has
// just published: the same index resolved against cat if the index is
// still current (no import since it was built), otherwise no view and a
// rebuild (at once with IndexInline, in the background by default).
// Callers hold the import token.
func (c *corpus) refreshView(ctx context.Context, cat *catalog) {
	if c.index == nil || c.followCatalog(cat) {
		return
	}
	switch c.opts.Index {
	case IndexInline:
		c.rebuildIndex(ctx)
	case IndexBackground:
		c.kickIndex()
	}
}

// followCatalog resolves the current index against cat and reports whether
// it could (the index is still current); otherwise it drops the view.
func (c *corpus) followCatalog(cat *catalog) bool {
	is := c.index
	is.viewMu.Lock()
	defer is.viewMu.Unlock()
	old := is.view.Load()
	if old != nil && old.cat == cat {
		return true // published for cat already (a bulk load's index)
	}
	if old != nil && old.over != nil {
		if old.over.answersFor(cat) {
			is.view.Store(&view{cat: cat, idx: old.idx, over: old.over})
			return true
		}
		is.view.Store(nil)
		return false
	}
	if old != nil && old.delta == nil && old.idx.version >= cat.importVersion {
		if v, err := newView(cat, old.idx, nil); err == nil {
			is.view.Store(v)
			return true
		}
	}
	if old != nil && old.delta != nil && old.cat.importVersion >= cat.importVersion {
		// Merged imports (mergeDelta), none since: the same rows,
		// resolved against cat.
		if v, err := newView(cat, old.idx, old.rows(0)); err == nil {
			is.view.Store(v)
			return true
		}
	}
	is.view.Store(nil)
	return false
}

// publishIndex makes x current if no import committed since it was built,
// and retires the index it replaces. On a replica, built names the
// catalogue x was built for, and x is current only if no backup was applied
// since: a backup may bring rows without a new import version (those of an
// import its writer has not committed yet), and no later delta brings them
// again.
func (c *corpus) publishIndex(x *index, built *catalog) bool {
	is := c.index
	is.viewMu.Lock()
	defer is.viewMu.Unlock()
	cat := c.cat.Load()
	if x.version < cat.importVersion || c.opts.Follower && cat != built {
		return false
	}
	v, err := newView(cat, x, nil)
	if err != nil {
		if !errors.Is(err, errIndexStale) {
			c.log.Warn("index unusable", "err", err)
		}
		return false
	}
	c.installView(v)
	return true
}

// installView publishes view v, retiring the index it replaces. Callers hold
// viewMu.
func (c *corpus) installView(v *view) {
	is := c.index
	old := is.current
	is.view.Store(v)
	is.current = v.idx
	if old != nil && old != v.idx {
		c.retire(old)
	}
}

// retire unmaps x once no lookup can still read it: lookups hold mu for
// reading while they read an index, and load the view under it.
func (c *corpus) retire(x *index) {
	c.index.mu.Lock()
	unmapFile(x.mapped)
	c.index.mu.Unlock()
}

// closeIndex drops the view and unmaps the index; Close calls it.
func (c *corpus) closeIndex() {
	is := c.index
	is.viewMu.Lock()
	defer is.viewMu.Unlock()
	is.view.Store(nil)
	if is.pending != nil {
		is.pending.rows.drop()
		is.pending = nil
	}
	if is.current != nil {
		c.retire(is.current)
		is.current = nil
	}
}

func (c *corpus) indexStats() IndexStats {
	is := c.index
	is.viewMu.Lock()
	defer is.viewMu.Unlock()
	if v := is.view.Load(); v != nil {
		st := IndexStats{Current: v.cat == c.cat.Load(), Digests: v.idx.n, Version: v.idx.version, Sets: len(v.idx.sets), Delta: len(v.delta)}
		if v.over != nil {
			st.Version, st.Overlay = v.over.version, v.over.len()
		}
		return st
	}
	return IndexStats{}
}

// indexCurrent reports whether lookups read the index now.
func (c *corpus) indexCurrent() bool {
	if c.index == nil {
		return false
	}
	v := c.index.view.Load()
	return v != nil && v.cat == c.cat.Load()
}

func (c *corpus) kickIndex() {
	select {
	case c.index.kick <- struct{}{}:
	default:
	}
}

// indexLoop rebuilds the index whenever kicked, until ctx ends.
func (c *corpus) indexLoop(ctx context.Context) {
	var quiet <-chan time.Time // armed by settle, again by each
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.index.kick:
		case <-c.index.settle:
			quiet = time.After(c.opts.settleAfter())
			continue
		case <-quiet:
		}
		quiet = nil
		if c.acquire() != nil {
			return
		}
		c.rebuildIndex(ctx)
		c.release()
	}
}

// compactSoon has a view's delta, just merged, written into the file:
// at once with IndexInline, once changes pause with IndexBackground, so
// that a restart loads the index instead of rebuilding it from Badger.
// Callers hold acquire.
func (c *corpus) compactSoon(ctx context.Context) {
	switch c.opts.Index {
	case IndexInline:
		c.rebuildIndex(ctx)
	case IndexBackground:
		c.settleIndex()
	}
}

// settleIndex asks indexLoop to compact the view's delta once changes
// pause (nothing without the loop: IndexInline, IndexManual).
func (c *corpus) settleIndex() {
	select {
	case c.index.settle <- struct{}{}:
	default:
	}
}

// rebuildIndex builds an index of the corpus as it is now and publishes it,
// unless the current one is still current. A failure is logged: lookups
// confirm in Badger meanwhile. Callers hold acquire.
func (c *corpus) rebuildIndex(ctx context.Context) {
	if err := c.buildIndex(ctx, false); err != nil && ctx.Err() == nil {
		c.log.Warn("building the lookup index failed; lookups confirm in Badger", "err", err)
	}
}

func (c *corpus) buildIndex(ctx context.Context, checkSaved bool) error {
	c.index.buildMu.Lock()
	defer c.index.buildMu.Unlock()
	cat := c.cat.Load()
	if cat.version == 0 {
		return nil
	}
	if p := c.takePending(); p != nil {
		// An import's (or a backup's) rows over its delta bound: merged
		// with the index it began from, unless another import committed
		// since (on a replica: unless any backup applied since). If not
		// published, the build goes on from Badger.
		var published bool
		var err error
		if p.cat == cat || !c.opts.Follower && p.cat.importVersion == cat.importVersion {
			published, err = c.mergeRuns(ctx, p)
		}
		p.rows.drop()
		if published || ctx.Err() != nil {
			return err
		}
		if err != nil {
			c.log.Warn("merging an import into the lookup index failed; rebuilding it from the corpus", "err", err)
		}
	}
	v := c.index.view.Load()
	if v != nil && v.cat == cat && v.delta != nil {
		return c.compactIndex(ctx, v)
	}
	if v != nil && v.over != nil && v.over.answersFor(cat) {
		return nil
	}
	if v != nil && v.delta == nil && v.over == nil && v.idx.answersFor(cat) {
		return nil
	}
	if checkSaved {
		if x, err := loadIndex(c.dir, c.kind); err == nil {
			current := x.answersFor(cat)
			unmapFile(x.mapped)
			if current {
				return nil
			}
		}
	}
	if ok, err := c.buildBaseView(ctx, cat); ok || err != nil {
		return err
	}
	n := c.keys.Load()
	_, _, _, rsz := c.kind.indexLayout(c.kind.indexBits(n))
	if err := c.checkSpace(int64(n*rsz+n/indexBucket*4), "the lookup index"); err != nil {
		return err
	}
	start := time.Now()
	// The snapshot is taken after cat was loaded, so it holds every digest
	// of every import committed at cat's version (and maybe later ones,
	// which cat's version then understates: conservative).
	x, err := c.writeIndex(ctx, cat, n)
	if err != nil {
		return err
	}
	published := c.publishIndex(x, cat)
	if !published {
		unmapFile(x.mapped)
	}
	c.log.Info("lookup index built", "digests", x.n, "sets", len(x.sets), "corpus_version", x.version,
		"current", published, "duration", time.Since(start))
	return nil
}

// compactIndex writes a new index from the view's index and delta (merged
// imports, or a replica's backups), merging the two sorted sequences
// (writeMerged), and publishes it: no Badger read. Callers hold acquire.
func (c *corpus) compactIndex(ctx context.Context, v *view) error {
	start := time.Now()
	nx, merged, err := c.writeMerged(ctx, v.cat.version, v.idx.n+uint64(len(v.delta)), &indexRows{x: v.idx}, deltaRows(v.delta))
	if err != nil {
		return err
	}
	// Published only in place of the view it was written from: a backup
	// applied meanwhile merged rows this index lacks.
	is := c.index
	is.viewMu.Lock()
	published := false
	if is.view.Load() == v {
		if nv, err := newView(v.cat, nx, nil); err == nil {
			c.installView(nv)
			published = true
		}
	}
	is.viewMu.Unlock()
	if !published {
		unmapFile(nx.mapped)
		c.kickIndex() // the view moved on: compact it
	}
	c.log.Info("lookup index compacted", "digests", nx.n, "merged", merged, "corpus_version", nx.version,
		"current", published, "duration", time.Since(start))
	return nil
}

// BuildIndex writes the lookup index now unless the saved one is current.
// Offline tools, which open a corpus with IndexManual, call it after their
// work so that a daemon starts with a current index.
func (c *corpus) BuildIndex(ctx context.Context) error {
	if c.readOnly != nil {
		return c.readOnly
	}
	if c.index == nil {
		return nil
	}
	if err := c.acquire(); err != nil {
		return err
	}
	defer c.release()
	return c.buildIndex(ctx, true)
}

// IndexMode says when the lookup index of a kind that keeps one (emails,
// password hashes) is rebuilt after an import.
type IndexMode int

const (
	// IndexBackground rebuilds it in the background after each import;
	// lookups confirm in Badger until it is done. The default.
	IndexBackground IndexMode = iota
	// IndexInline rebuilds it before an import's Import call returns
	// (tests and benchmarks, which want the index path at once).
	IndexInline
	// IndexOff never builds it: every filter "maybe" is confirmed in Badger.
	IndexOff
	// IndexManual builds it only in a first import's bulk load (in the same
	// pass) and when BuildIndex is called: offline tools, which call
	// BuildIndex once before closing.
	IndexManual
)

// openIndex loads the saved index at open, publishing it if it is current,
// and starts the rebuilding loop (or, with IndexInline, rebuilds at once).
func (c *corpus) openIndex(ctx context.Context) {
	c.index.kick = make(chan struct{}, 1)
	c.index.settle = make(chan struct{}, 1)
	if c.opts.Index == IndexManual {
		return
	}
	cat := c.cat.Load()
	x, err := loadIndex(c.dir, c.kind)
	if c.opts.Follower && err == nil {
		// A replica's saved index may lack rows of backups applied after
		// it was written: it is rebuilt.
		unmapFile(x.mapped)
		x, err = nil, errNoIndex
	}
	switch {
	case err == nil:
		if !c.publishIndex(x, cat) {
			unmapFile(x.mapped)
			c.log.Info("lookup index is older than the corpus; rebuilding it", "index_version", x.version, "corpus_version", cat.version)
		}
	case errors.Is(err, errNoIndex):
	default:
		c.log.Warn("lookup index unreadable; rebuilding it", "err", err)
	}
	if c.index.view.Load() == nil && cat.version > 0 && c.opts.Index != IndexInline {
		// A base view is not saved; built now, it costs a read of its
		// rows (bounded: maxOverlayRows), not the base's, and writes
		// nothing: a corpus opened read-only gets it too.
		if _, err := c.buildBaseView(ctx, cat); err != nil {
			c.log.Warn("building the lookup index over the base failed; building a whole one", "err", err)
		}
	}
	if c.readOnly != nil {
		return
	}
	if c.opts.Index == IndexInline {
		if cat.version > 0 {
			c.rebuildIndex(ctx)
		}
		return
	}
	c.goBackground(c.indexLoop)
	if cat.version > 0 && c.index.view.Load() == nil {
		c.kickIndex()
	}
}
