package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/breachd/breachd"
)

// The index is a read-optimised copy of the corpus for the lookups the
// filter lets through: every digest in Badger, sorted, each with the id of
// its membership set (the few distinct lists of segments), in one file
// mapped into memory. A lookup reads one directory word and one or two
// cache lines of records instead of walking Badger's memtables and levels,
// and answers with a breach list shared by every digest of the same set, so
// it allocates nothing.
//
// Badger stays the store of record; the index is rebuilt from a Badger
// snapshot in the background after each import (the file is replaced
// atomically), and used only while it is current: built at a corpus
// version no older than the last committed import. Deletes and catalogue
// updates do not make it stale: a set names segments, and each lookup
// resolves them against the catalogue it loaded, so a deleted breach's
// segments simply resolve to nothing. Until a rebuild after an import
// completes, lookups confirm in Badger as before. A crash leaves at worst
// a stale index (unused) or a temporary file (collected).
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

const (
	indexFile    = "breachd.index"
	indexMagic   = "BRIDX001"
	indexHdrSize = 48
	indexRecSize = breachd.DigestSize + 4
	// indexBucket is the mean number of records per directory bucket: the
	// records a lookup scans (36 bytes each: two to four cache lines).
	indexBucket = 4
)

// index is an open index file. It is immutable; retire unmaps it once no
// lookup can be reading it.
type index struct {
	version uint64 // corpus version it was built at
	n       uint64
	bits    uint
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

// loadIndex maps the index file in dir and checks its shape.
func loadIndex(dir string) (*index, error) {
	f, err := os.Open(filepath.Join(dir, indexFile))
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
	x, err := parseIndex(m)
	if err != nil {
		unmapFile(m)
		return nil, err
	}
	return x, nil
}

func parseIndex(m []byte) (*index, error) {
	bad := func(what string) (*index, error) {
		return nil, fmt.Errorf("%w: index file: %s", ErrCorrupt, what)
	}
	if string(m[:8]) != indexMagic {
		return bad("bad magic")
	}
	le := binary.LittleEndian
	x := &index{version: le.Uint64(m[8:]), n: le.Uint64(m[16:]), bits: uint(le.Uint64(m[24:])), mapped: m}
	nsets, setsOff := le.Uint64(m[32:]), le.Uint64(m[40:])
	if x.bits > 30 || x.n >= 1<<32 {
		return bad("bad header")
	}
	recEnd := indexHdrSize + x.n*indexRecSize
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
	return x, nil
}

// indexWriter writes an index file from digests given in ascending order,
// to a temporary file that install renames into place. The bulk load
// feeds it as it writes Badger's tables; buildIndex from a Badger snapshot.
type indexWriter struct {
	dir      string
	f        *os.File
	bw       *bufio.Writer
	bits     uint
	dirWords []uint32
	setIDs   map[string]uint32
	sets     [][]byte
	count    uint64
	next     uint64 // the next directory bucket to fill
	rec      [indexRecSize]byte
}

// newIndexWriter starts an index of about n digests in dir.
func newIndexWriter(dir string, n uint64) (*indexWriter, error) {
	f, err := os.CreateTemp(dir, indexFile+".tmp*")
	if err != nil {
		return nil, err
	}
	w := &indexWriter{dir: dir, f: f, bw: bufio.NewWriterSize(f, 1<<20), bits: indexBits(n), setIDs: map[string]uint32{}}
	w.dirWords = make([]uint32, (1<<w.bits)+1)
	if _, err := w.bw.Write(make([]byte, indexHdrSize)); err != nil {
		w.abort()
		return nil, err
	}
	return w, nil
}

// add appends digest d (32 bytes, above the last one) with membership val.
func (w *indexWriter) add(d, val []byte) error {
	if w.count >= 1<<32-1 {
		return errors.New("index: more than 2^32 digests")
	}
	id, ok := w.setIDs[string(val)]
	if !ok {
		id = uint32(len(w.sets))
		w.setIDs[string(val)] = id
		w.sets = append(w.sets, bytes.Clone(val))
	}
	copy(w.rec[:], d)
	binary.LittleEndian.PutUint32(w.rec[breachd.DigestSize:], id)
	if _, err := w.bw.Write(w.rec[:]); err != nil {
		return err
	}
	for bucket := bucketOf(d, w.bits); w.next <= bucket; w.next++ {
		w.dirWords[w.next] = uint32(w.count)
	}
	w.count++
	return nil
}

// finish writes the directory, the sets and a header naming corpus
// version v, and syncs the file; install then puts it in place.
func (w *indexWriter) finish(v uint64) error {
	for ; w.next < uint64(len(w.dirWords)); w.next++ {
		w.dirWords[w.next] = uint32(w.count)
	}
	le := binary.LittleEndian
	off := uint64(indexHdrSize) + w.count*indexRecSize
	if pad := (4 - off%4) % 4; pad > 0 {
		w.bw.Write(make([]byte, pad))
		off += pad
	}
	var w4 [4]byte
	for _, d := range w.dirWords {
		le.PutUint32(w4[:], d)
		w.bw.Write(w4[:])
	}
	setsOff := off + uint64(len(w.dirWords))*4
	for _, s := range w.sets {
		le.PutUint32(w4[:], uint32(len(s)/4))
		w.bw.Write(w4[:])
		w.bw.Write(s)
	}
	if err := w.bw.Flush(); err != nil {
		return err
	}
	hdr := make([]byte, indexHdrSize)
	copy(hdr, indexMagic)
	le.PutUint64(hdr[8:], v)
	le.PutUint64(hdr[16:], w.count)
	le.PutUint64(hdr[24:], uint64(w.bits))
	le.PutUint64(hdr[32:], uint64(len(w.sets)))
	le.PutUint64(hdr[40:], setsOff)
	if _, err := w.f.WriteAt(hdr, 0); err != nil {
		return err
	}
	return w.f.Sync()
}

// install renames the finished file into place and opens it. Only once
// the corpus version it names is committed: an index must never claim a
// version whose digests it may lack.
func (w *indexWriter) install() (*index, error) {
	if err := w.f.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(w.f.Name(), filepath.Join(w.dir, indexFile)); err != nil {
		os.Remove(w.f.Name())
		return nil, err
	}
	if err := syncDir(w.dir); err != nil {
		return nil, err
	}
	return loadIndex(w.dir)
}

// newIndexWriter starts an index of about n digests, its temporary file
// named as being written until doneWriting, so that Collect spares it.
func (s *Store) newIndexWriter(n uint64) (*indexWriter, error) {
	s.tmpMu.Lock()
	defer s.tmpMu.Unlock()
	w, err := newIndexWriter(s.dir, n)
	if err != nil {
		return nil, err
	}
	if s.writingTmps == nil {
		s.writingTmps = map[string]bool{}
	}
	s.writingTmps[w.f.Name()] = true
	return w, nil
}

func (s *Store) doneWriting(w *indexWriter) {
	s.tmpMu.Lock()
	delete(s.writingTmps, w.f.Name())
	s.tmpMu.Unlock()
}

// abort drops the unfinished file.
func (w *indexWriter) abort() {
	w.f.Close()
	os.Remove(w.f.Name())
}

// writeIndex writes the index of a Badger snapshot, taken at corpus
// version v or later, and opens it. About n digests are expected (it sizes
// the directory). The file replaces the previous one atomically.
func (s *Store) writeIndex(ctx context.Context, v, n uint64) (*index, error) {
	w, err := s.newIndexWriter(n)
	if err != nil {
		return nil, err
	}
	defer s.doneWriting(w)
	err = s.eachDigest(ctx, func(item *badger.Item, val []byte) error {
		k := item.Key()
		if len(k) != emailKeySize {
			return fmt.Errorf("%w: email key of %d bytes", ErrCorrupt, len(k))
		}
		return w.add(k[1:], val)
	})
	if err == nil {
		err = w.finish(v)
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
type view struct {
	cat  *catalog
	idx  *index
	sets [][]*breachd.CatalogEntry // by set id; nil: no visible breach
}

func newView(c *catalog, x *index) (*view, error) {
	v := &view{cat: c, idx: x, sets: make([][]*breachd.CatalogEntry, len(x.sets))}
	for i, s := range x.sets {
		bs, err := c.resolve(nil, s)
		if err != nil {
			return nil, err
		}
		if len(bs) > 0 {
			v.sets[i] = bs
		}
	}
	return v, nil
}

// find answers digest d from the view: its visible breaches (shared), and
// whether the index holds d at all (false: a filter false positive).
func (v *view) find(d *breachd.Digest) ([]*breachd.CatalogEntry, bool) {
	id, ok := v.idx.find(d)
	if !ok {
		return nil, false
	}
	return v.sets[id], true
}

// refreshView makes the view follow catalogue c, which the caller has just
// published: the same index resolved against c if the index is still
// current (no import since it was built), otherwise no view and a rebuild
// (at once with IndexInline, in the background by default). Callers hold
// the import token.
func (s *Store) refreshView(ctx context.Context, c *catalog) {
	if s.followCatalog(c) {
		return
	}
	switch s.opts.Index {
	case IndexInline:
		s.rebuildIndex(ctx)
	case IndexBackground:
		s.kickIndex()
	}
}

// followCatalog resolves the current index against c and reports whether
// it could (the index is still current); otherwise it drops the view.
func (s *Store) followCatalog(c *catalog) bool {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	old := s.view.Load()
	if old != nil && old.cat == c {
		return true // published for c already (a bulk load's index)
	}
	if old != nil && old.idx.version >= c.importVersion {
		if v, err := newView(c, old.idx); err == nil {
			s.view.Store(v)
			return true
		}
	}
	s.view.Store(nil)
	return false
}

// publishIndex makes x current if no import committed since it was built,
// and retires the index it replaces.
func (s *Store) publishIndex(x *index) bool {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	c := s.cat.Load()
	if x.version < c.importVersion {
		return false
	}
	v, err := newView(c, x)
	if err != nil {
		s.log.Warn("index unusable", "err", err)
		return false
	}
	old := s.current
	s.view.Store(v)
	s.current = x
	if old != nil && old != x {
		s.retire(old)
	}
	return true
}

// retire unmaps x once no lookup can still read it: lookups hold idxMu
// for reading while they read an index, and load the view under it.
func (s *Store) retire(x *index) {
	s.idxMu.Lock()
	unmapFile(x.mapped)
	s.idxMu.Unlock()
}

func (s *Store) kickIndex() {
	select {
	case s.indexKick <- struct{}{}:
	default:
	}
}

// indexLoop rebuilds the index whenever kicked, until ctx ends.
func (s *Store) indexLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.indexKick:
		}
		if s.acquire() != nil {
			return
		}
		s.rebuildIndex(ctx)
		s.release()
	}
}

// rebuildIndex builds an index of the corpus as it is now and publishes it,
// unless the current one is still current. A failure is logged: lookups
// confirm in Badger meanwhile. Callers hold acquire.
func (s *Store) rebuildIndex(ctx context.Context) {
	if err := s.buildIndex(ctx, false); err != nil && ctx.Err() == nil {
		s.log.Warn("building the lookup index failed; lookups confirm in Badger", "err", err)
	}
}

func (s *Store) buildIndex(ctx context.Context, checkSaved bool) error {
	c := s.cat.Load()
	if c.version == 0 {
		return nil
	}
	if v := s.view.Load(); v != nil && v.idx.version >= c.importVersion {
		return nil
	}
	if checkSaved {
		if x, err := loadIndex(s.dir); err == nil {
			current := x.version >= c.importVersion
			unmapFile(x.mapped)
			if current {
				return nil
			}
		}
	}
	n := s.keys.Load()
	if err := s.checkSpace(int64(n+n/indexBucket)*indexRecSize, "the lookup index"); err != nil {
		return err
	}
	start := time.Now()
	// The snapshot is taken after c was loaded, so it holds every digest
	// of every import committed at c's version (and maybe later ones,
	// which c's version then understates: conservative).
	x, err := s.writeIndex(ctx, c.version, n)
	if err != nil {
		return err
	}
	published := s.publishIndex(x)
	if !published {
		unmapFile(x.mapped)
	}
	s.log.Info("lookup index built", "digests", x.n, "sets", len(x.sets), "corpus_version", x.version,
		"current", published, "duration", time.Since(start))
	return nil
}

// BuildIndex writes the lookup index now unless the saved one is current.
// Offline tools, which open the store with IndexManual, call it after
// their work so that a daemon starts with a current index.
func (s *Store) BuildIndex(ctx context.Context) error {
	if s.readOnly != nil {
		return s.readOnly
	}
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	return s.buildIndex(ctx, true)
}

// IndexMode says when the lookup index is rebuilt after an import.
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

// openIndex loads the saved index at Open, publishing it if it is current,
// and starts the rebuilding loop (or, with IndexInline, rebuilds at once).
func (s *Store) openIndex(ctx, bgCtx context.Context) {
	s.indexKick = make(chan struct{}, 1)
	if s.opts.Index == IndexOff || s.opts.Index == IndexManual {
		return
	}
	c := s.cat.Load()
	x, err := loadIndex(s.dir)
	switch {
	case err == nil:
		if !s.publishIndex(x) {
			unmapFile(x.mapped)
			s.log.Info("lookup index is older than the corpus; rebuilding it", "index_version", x.version, "corpus_version", c.version)
		}
	case errors.Is(err, errNoIndex):
	default:
		s.log.Warn("lookup index unreadable; rebuilding it", "err", err)
	}
	if s.readOnly != nil {
		return
	}
	if s.opts.Index == IndexInline {
		if c.version > 0 {
			s.rebuildIndex(ctx)
		}
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.indexLoop(bgCtx)
	}()
	if c.version > 0 && s.view.Load() == nil {
		s.kickIndex()
	}
}
