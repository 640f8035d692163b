package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/breachd/breachd"
)

// An import keeps the rows it writes for the lookup index (keptRows), and
// a replica the rows a backup changes, so that the commit merges them into
// the view instead of rebuilding the index from Badger (about 0.5 µs a key of the whole corpus, against 0.08
// for a merge of the index file with the changed rows). Up to a view's
// delta bound they stay in memory and the view takes them as its delta
// (mergeDelta). Past it they are spilled, the bound's worth at a time, to
// sorted run files: the commit then leaves lookups to Badger and has the
// index written by merging the view's index and delta with the runs
// (mergeRuns), still without reading Badger. Run files are unlinked as soon
// as they are made, so a crash leaves none; an import that never commits
// closes them.

// maxChangeRuns bounds the run files of an import: past it (an import far
// larger than the corpus, which a rebuild reads at little more cost than
// the import wrote) the commit rebuilds the index from Badger.
const maxChangeRuns = 16

// keptRows are the rows a change (an import, a replica's backup) writes,
// kept for the lookup index: in memory up to limit keys, then spilled to
// runs (at most maxChangeRuns), and given up past them or on a failed
// spill (rows nil: the index is rebuilt). On a replica each row's version
// is kept too, and a key's row is its highest version's.
type keptRows struct {
	dir      string
	limit    int
	rows     map[breachd.Digest][]byte // nil: not kept
	versions map[breachd.Digest]uint64 // a replica's; nil on a writer
	runs     []*os.File                // oldest first
	log      *slog.Logger
}

// newKeptRows keeps up to limit rows in memory, with their versions if
// versioned.
func newKeptRows(c *corpus, limit int, versioned bool) *keptRows {
	k := &keptRows{dir: c.dir, limit: limit, rows: map[breachd.Digest][]byte{}, log: c.log}
	if versioned {
		k.versions = map[breachd.Digest]uint64{}
	}
	return k
}

// kept reports whether every row added so far is kept.
func (k *keptRows) kept() bool { return k != nil && k.rows != nil }

// spilled reports whether some of them are in runs.
func (k *keptRows) spilled() bool { return k != nil && len(k.runs) > 0 }

// add keeps d's row val (nil: deleted) of version (0 on a writer).
func (k *keptRows) add(d breachd.Digest, val []byte, version uint64) {
	if k.rows == nil {
		return
	}
	if len(k.rows) >= k.limit && !k.has(d) {
		var f *os.File
		var err error
		if len(k.runs) < maxChangeRuns {
			f, err = spillChanges(k.dir, k.rows, k.versions)
		}
		if f == nil {
			if err != nil {
				k.log.Warn("spilling changed rows for the lookup index failed; it will be rebuilt", "err", err)
			}
			k.drop()
			return
		}
		k.runs = append(k.runs, f)
		clear(k.rows)
		clear(k.versions)
	}
	if k.versions != nil {
		if v, seen := k.versions[d]; seen && version <= v {
			return
		}
		k.versions[d] = version
	}
	k.rows[d] = val
}

func (k *keptRows) has(d breachd.Digest) bool {
	_, ok := k.rows[d]
	return ok
}

// drop stops keeping rows, and closes the runs.
func (k *keptRows) drop() {
	if k == nil {
		return
	}
	for _, f := range k.runs {
		f.Close()
	}
	k.runs, k.rows, k.versions = nil, nil, nil
}

// handOver gives the rows to the index: merged at once into the view as
// its delta (mergeDelta) while they are in memory, handed to the next
// build (mergeLater) once spilled; k is left empty then, the rows and runs
// being the index's. It reports false when the view could not take them
// (the caller rebuilds). Callers hold acquire.
func (k *keptRows) handOver(c *corpus, prev, cat *catalog) bool {
	if len(k.runs) > 0 {
		moved := *k
		k.runs, k.rows, k.versions = nil, nil, nil
		c.mergeLater(prev, cat, &moved)
		return true
	}
	return c.mergeDelta(prev, cat, k.rows)
}

// spillChanges writes the rows of m, sorted by key, to an unlinked
// temporary file in dir, each as its key, its version (uvarint: versions
// gives it, on a replica; 0 on a writer), its value's length plus one
// (uvarint; 0 for nil, a row deleted) and its value, and returns the
// file, rewound.
func spillChanges(dir string, m map[breachd.Digest][]byte, versions map[breachd.Digest]uint64) (*os.File, error) {
	f, err := os.CreateTemp(dir, "breachd.changes.*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name()) // the open file is the run: nothing for a crash to leave
	// Sorted as records of a key and its value's number, by radix
	// (sortRecords): a third of the time of a comparison sort.
	const recSize = breachd.DigestSize + 4
	recs := make([]byte, 0, len(m)*recSize)
	vals := make([][]byte, 0, len(m))
	for d, v := range m {
		recs = binary.BigEndian.AppendUint32(append(recs, d[:]...), uint32(len(vals)))
		vals = append(vals, v)
	}
	sortRecords(recs, recSize, breachd.DigestSize)
	w := bufio.NewWriterSize(f, 1<<20)
	var n [binary.MaxVarintLen64]byte
	for r := recs; len(r) > 0; r = r[recSize:] {
		d := breachd.Digest(r[:breachd.DigestSize])
		v := vals[binary.BigEndian.Uint32(r[breachd.DigestSize:])]
		w.Write(d[:])
		w.Write(n[:binary.PutUvarint(n[:], versions[d])])
		if v == nil {
			w.Write(n[:binary.PutUvarint(n[:], 0)])
			continue
		}
		w.Write(n[:binary.PutUvarint(n[:], uint64(len(v))+1)])
		w.Write(v)
	}
	err = w.Flush()
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// pendingMerge is a change's rows waiting to be merged into the index
// (mergeRuns): the view current before the change (base; its index stays
// mapped, being the last one published, until the merge publishes
// another) and the change's spilled rows, which together make the rows at
// catalogue cat.
type pendingMerge struct {
	base *view
	rows *keptRows
	cat  *catalog
}

// mergeLater hands the rows of a change over its delta bound (an import's
// or a replica's backup's) to the next index build, if the view was
// current for prev, the catalogue before the change published cat;
// lookups confirm in Badger until that build publishes the merged index.
// Otherwise it drops them, and the build reads Badger. Callers hold
// acquire.
func (c *corpus) mergeLater(prev, cat *catalog, rows *keptRows) {
	is := c.index
	is.viewMu.Lock()
	if old := is.pending; old != nil {
		old.rows.drop() // never built: another change committed since
		is.pending = nil
	}
	if v := is.view.Load(); v != nil && v.cat == prev && v.over == nil {
		is.pending = &pendingMerge{base: v, rows: rows, cat: cat}
	} else {
		rows.drop()
	}
	is.view.Store(nil)
	is.viewMu.Unlock()
	switch c.opts.Index {
	case IndexInline:
		c.rebuildIndex(context.Background())
	case IndexBackground:
		c.kickIndex()
	}
}

// takePending returns the pending merge, if any, and forgets it.
func (c *corpus) takePending() *pendingMerge {
	is := c.index
	is.viewMu.Lock()
	defer is.viewMu.Unlock()
	p := is.pending
	is.pending = nil
	return p
}

// mergeRuns writes the index of p's rows (writeMerged: its base view's
// index and delta, its runs and the rows still in memory), the rows at
// p.cat, and
// publishes it (publishIndex: on a writer for any catalogue with no import
// since p.cat, on a replica for p.cat only, whose rows any backup since
// may have changed); it reports whether it published it. Callers hold
// acquire.
func (c *corpus) mergeRuns(ctx context.Context, p *pendingMerge) (bool, error) {
	start := time.Now()
	x := p.base.idx
	srcs := []rowSource{&indexRows{x: x}, deltaRows(p.base.delta)}
	total := x.n + uint64(len(p.base.delta)+len(p.rows.rows))
	for _, f := range p.rows.runs {
		srcs = append(srcs, &runRows{r: bufio.NewReaderSize(f, 1<<20)})
		if fi, err := f.Stat(); err == nil {
			total += uint64(fi.Size()) / (breachd.DigestSize + 2) // at most
		}
	}
	rest := mapRows(p.rows.rows, func(v []byte) []byte { return v })
	rest.withVersions(p.rows.versions)
	srcs = append(srcs, rest)
	_, _, _, rsz := c.kind.indexLayout(c.kind.indexBits(total))
	if err := c.checkSpace(int64(total*rsz+total/indexBucket*4), "the lookup index"); err != nil {
		return false, err
	}
	nx, merged, err := c.writeMerged(ctx, p.cat.version, total, srcs...)
	if err != nil {
		return false, err
	}
	published := c.publishIndex(nx, p.cat)
	if !published {
		unmapFile(nx.mapped)
	}
	c.log.Info("lookup index merged", "digests", nx.n, "merged", merged, "runs", len(p.rows.runs), "corpus_version", nx.version,
		"current", published, "duration", time.Since(start))
	return published, nil
}

// writeMerged writes and installs an index, naming corpus version, of
// about total keys, from sorted sources of rows, oldest first: of a key's
// rows the one of the highest version is taken, of the newest source among
// equals (a nil value: the row is gone). Versions are a replica's Badger
// versions of its backups' rows, 0 elsewhere, so on a writer the newest
// source wins. It returns the index and the number of rows taken from a
// source other than the first (the index merged into).
func (c *corpus) writeMerged(ctx context.Context, version, total uint64, srcs ...rowSource) (*index, int, error) {
	w, err := c.newIndexWriter(total, nil)
	if err != nil {
		return nil, 0, err
	}
	defer c.doneWriting(w)
	for _, s := range srcs {
		s.next()
	}
	merged := 0
	var cur breachd.Digest
	for n := 0; err == nil; n++ {
		if n%(1<<16) == 0 {
			if err = ctx.Err(); err != nil {
				break
			}
		}
		// The smallest key, and the newest source that has it.
		var key []byte
		top := -1
		for i, s := range srcs {
			k := s.key()
			if k == nil {
				continue
			}
			switch c := bytes.Compare(k, key); {
			case top < 0 || c < 0:
				key, top = k, i
			case c == 0 && s.version() >= srcs[top].version():
				top = i
			}
		}
		if top < 0 {
			break
		}
		if val := srcs[top].val(); val != nil {
			err = w.add(key, val)
		}
		if top > 0 {
			merged++
		}
		copy(cur[:], key) // the sources move on from it
		for _, s := range srcs {
			if k := s.key(); k != nil && bytes.Equal(k, cur[:]) {
				s.next()
			}
		}
	}
	for _, s := range srcs {
		if err == nil {
			err = s.err()
		}
	}
	if err == nil {
		err = w.finish(version)
	}
	if err != nil {
		w.abort()
		return nil, 0, err
	}
	nx, err := w.install()
	return nx, merged, err
}

// deltaRows are a view's delta, sorted.
func deltaRows(delta map[breachd.Digest]deltaRow) *sortedRows {
	return mapRows(delta, func(r deltaRow) []byte { return r.val })
}

// rowSource is a sorted sequence of rows for mergeRuns: key is nil past
// its end; next moves on (it is called once before the first row).
type rowSource interface {
	next()
	key() []byte
	val() []byte
	version() uint64
	err() error
}

// indexRows are the records of an index, with their sets' values.
type indexRows struct {
	x *index
	i uint64 // the next record, plus one
}

func (s *indexRows) next() { s.i++ }
func (s *indexRows) key() []byte {
	if s.i > s.x.n {
		return nil
	}
	return s.x.recs[(s.i-1)*indexRecSize : (s.i-1)*indexRecSize+breachd.DigestSize]
}
func (s *indexRows) val() []byte {
	rec := s.x.recs[(s.i-1)*indexRecSize : s.i*indexRecSize]
	return s.x.sets[binary.LittleEndian.Uint32(rec[breachd.DigestSize:])]
}
func (s *indexRows) version() uint64 { return 0 }
func (s *indexRows) err() error      { return nil }

// sortedRows are a map's rows, sorted, with their versions if given.
type sortedRows struct {
	keys []breachd.Digest
	vals [][]byte
	vers []uint64
	i    int
}

func mapRows[V any](m map[breachd.Digest]V, value func(V) []byte) *sortedRows {
	s := &sortedRows{keys: make([]breachd.Digest, 0, len(m)), i: -1}
	for d := range m {
		s.keys = append(s.keys, d)
	}
	slices.SortFunc(s.keys, func(a, b breachd.Digest) int { return bytes.Compare(a[:], b[:]) })
	s.vals = make([][]byte, len(s.keys))
	for i, d := range s.keys {
		s.vals[i] = value(m[d])
	}
	return s
}

func (s *sortedRows) next() { s.i++ }
func (s *sortedRows) key() []byte {
	if s.i >= len(s.keys) {
		return nil
	}
	return s.keys[s.i][:]
}
func (s *sortedRows) val() []byte { return s.vals[s.i] }
func (s *sortedRows) err() error  { return nil }
func (s *sortedRows) version() uint64 {
	if s.vers == nil {
		return 0
	}
	return s.vers[s.i]
}

// withVersions gives the rows their versions (nil: none).
func (s *sortedRows) withVersions(versions map[breachd.Digest]uint64) {
	if versions == nil {
		return
	}
	s.vers = make([]uint64, len(s.keys))
	for i, d := range s.keys {
		s.vers[i] = versions[d]
	}
}

// runRows are a run file's rows (spillChanges).
type runRows struct {
	r    *bufio.Reader
	k    [breachd.DigestSize]byte
	ver  uint64
	v    []byte // nil: the row is gone
	buf  []byte
	done bool
	e    error
}

func (s *runRows) next() {
	if s.done {
		return
	}
	if _, err := io.ReadFull(s.r, s.k[:]); err != nil {
		s.done = true
		if err != io.EOF {
			s.e = fmt.Errorf("reading a run of changed rows: %w", err)
		}
		return
	}
	var err error
	s.ver, err = binary.ReadUvarint(s.r)
	var n uint64
	if err == nil {
		n, err = binary.ReadUvarint(s.r)
	}
	if err == nil && n > 1<<20 {
		err = errors.New("a value longer than 1 MiB")
	}
	switch {
	case err != nil:
	case n == 0:
		s.v = nil
	case n == 1:
		s.v = []byte{}
	default:
		s.buf = slices.Grow(s.buf[:0], int(n-1))[:n-1]
		s.v = s.buf
		_, err = io.ReadFull(s.r, s.v)
	}
	if err != nil {
		s.done, s.e = true, fmt.Errorf("reading a run of changed rows: %w", err)
	}
}

func (s *runRows) key() []byte {
	if s.done {
		return nil
	}
	return s.k[:]
}
func (s *runRows) val() []byte     { return s.v }
func (s *runRows) version() uint64 { return s.ver }
func (s *runRows) err() error      { return s.e }
