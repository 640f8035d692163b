package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/pb"

	"github.com/breachd/breachd/internal/atomicfile"
)

// A password corpus's first release, streamed in hash order, is not
// written to Badger at all: its rows are its base, a counted index file
// (index.go's layout, 20 or 21 bytes a SHA-1 hash with exact counts) that
// the stream writes as the keys come, and that the lookup index of the
// first version is a hard link to. Badger's copy of every hash (about 50
// bytes a hash beside the index's 21, and most of a first import's time:
// its StreamWriter decodes every row again on one goroutine) is gone;
// Badger keeps the catalogue and the rows of later releases.
//
// The base is the rows of segment bulkSegment that no Badger row shadows:
// every reader of rows reads the Badger row of a key if there is one, and
// the base's entry (bulkSegment, count) otherwise. That is exact because
// every row written after the base merges the base's entry into itself
// (an import reads a key's old value through corpus.get, which falls back
// to the base), so a Badger row of a key the base holds holds the base's
// entry too, or lost it to a collection because its release was deleted.
// The readers: corpus.get (a lookup's fallback, an import's merge),
// Passwords.Range's fallback, eachKey (the filter and index rebuilds, a
// full collection), and Backup, whose snapshots carry the base's rows at
// Badger version 1 (below every row that can shadow them), marked
// (baseStreamID). A replica applying its first snapshot writes the marked
// rows to a base of its own (baseWriter), so it holds what the writer
// does; deltas never carry base rows (the base is written only by a first
// import, at version 0, before any backup). A replica that loaded them as
// Badger's rows (before this, or applying its snapshot again after a
// crash) answers the same from them. (So a row that only repeats the
// base's entry, as an abandoned import's leaves once collected, must stay
// a row: deleting it would change no answer on the writer, but leave such
// a replica without the key.)
//
// Lifecycle, and the crash harness's points:
//   - a first import in hash order writes the base to a temporary file;
//     at its commit (or when out-of-order input leaves the stream, so that
//     the write batches that follow merge with it) the file is synced and
//     renamed into place (base-written, base-renamed), and the commit's
//     transaction records keyBase. A base without keyBase at open is an
//     interrupted first import's: removed.
//   - deleting its release: the delete commits (the base's segment is
//     invisible from then on), the full collection that follows rewrites
//     the rows naming it, deletes keyBase, and removes the file. A
//     replica removes its base when a delta deletes keyBase.
//   - a replica's base: written as its first snapshot streams, put in
//     place once Badger holds the rest of it (replica-base-row,
//     replica-rows-loaded, base-renamed); a kill before that leaves a
//     temporary file, removed at open, and the follower applies the
//     snapshot again before it serves, writing the base again.
const baseFile = "breachd.base"

// keyBase records that the corpus has a base (its presence; the value is
// unused).
var keyBase = []byte("mbase")

// base is an open base file. Readers take a reference (corpus.getBase);
// the last one to drop it unmaps the file.
type base struct {
	x    *index
	refs atomic.Int64 // the corpus's reference, plus one per reader
}

// getBase returns the base with a reference taken (put it), or nil.
func (c *corpus) getBase() *base {
	for {
		b := c.base.Load()
		if b == nil {
			return nil
		}
		n := b.refs.Load()
		if n <= 0 {
			return nil // dropped meanwhile
		}
		if b.refs.CompareAndSwap(n, n+1) {
			return b
		}
	}
}

// put drops a reference.
func (b *base) put() {
	if b.refs.Add(-1) == 0 {
		unmapFile(b.x.mapped)
	}
}

// setBase makes x the corpus's base.
func (c *corpus) setBase(x *index) {
	b := &base{x: x}
	b.refs.Store(1)
	if old := c.base.Swap(b); old != nil {
		old.put()
	}
}

// dropBase forgets the base (unmapped once no reader holds it) and, with
// remove, removes its file.
func (c *corpus) dropBase(remove bool) error {
	if b := c.base.Swap(nil); b != nil {
		b.put()
	}
	if !remove {
		return nil
	}
	if err := os.Remove(filepath.Join(c.dir, baseFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return atomicfile.SyncDir(c.dir)
}

// hasBase reports whether the corpus has a base now.
func (c *corpus) hasBase() bool {
	b := c.getBase()
	if b != nil {
		b.put()
	}
	return b != nil
}

// openBase opens the base that the catalogue records, and removes a base
// file it does not (an interrupted first import's). Open calls it.
//
// A replica's base is the one it wrote from its first snapshot, if it did
// (baseWriter; before that, replicas loaded the base's rows into Badger,
// and still do from a writer that does not mark them): keyBase, the
// writer's, came with the snapshot, so a recorded base without a file is
// such a replica's, not a loss.
func (c *corpus) openBase() error {
	if !c.kind.counted {
		return nil
	}
	recorded, err := c.hasKey(keyBase, "load catalogue")
	if err != nil {
		return err
	}
	if !recorded {
		if c.readOnly != nil {
			return nil
		}
		return classify("remove an uncommitted base", c.dropBase(true))
	}
	x, err := loadIndexFile(c.dir, baseFile, c.kind)
	switch {
	case errors.Is(err, errNoIndex) && c.opts.Follower:
		return nil // the base is Badger's rows
	case errors.Is(err, errNoIndex):
		return fmt.Errorf("%w: the catalogue records the first release's hashes in %s, which is missing", ErrCorrupt, baseFile)
	case err != nil:
		return fmt.Errorf("open %s: %w", baseFile, err)
	}
	if x.cw != 3 || !bytes.Equal(x.sets[0], binary.BigEndian.AppendUint32(nil, bulkSegment)) {
		unmapFile(x.mapped)
		return fmt.Errorf("%w: %s is not a base of segment %d", ErrCorrupt, baseFile, bulkSegment)
	}
	c.setBase(x)
	return nil
}

// baseRow calls fn with the base's row value for key, if the base holds
// it, and reports whether it does.
func (c *corpus) baseRow(key []byte, fn func(v []byte) error) (bool, error) {
	b := c.getBase()
	if b == nil {
		return false, nil
	}
	defer b.put()
	n, ok := b.x.findCount(key)
	if !ok {
		return false, nil
	}
	var v [12]byte
	return true, fn(c.kind.appendEntry(v[:0], bulkSegment, n))
}

// eachKey calls fn for every key and its row value (valid only during the
// call), in key order, as eachRow does, and, with since 0, for every key
// of the base that no row shadows, with its base row and a nil item. It
// checks ctx and paces as eachRow does.
func (c *corpus) eachKey(ctx context.Context, cat *catalog, since uint64, fn func(key, val []byte, item *badger.Item) error) error {
	b := c.getBase()
	if b == nil || since > 0 {
		if b != nil {
			b.put()
		}
		return c.eachRow(ctx, cat, since, func(item *badger.Item, v []byte) error {
			return fn(item.Key()[1:], v, item)
		})
	}
	defer b.put()
	cur := b.x.cursor(c.kind.keySize)
	p := c.pacer()
	var val []byte
	var i int
	// below calls fn for the base's keys below limit (nil: all of them).
	below := func(limit []byte) error {
		for ; cur.valid() && (limit == nil || bytes.Compare(cur.key, limit) < 0); cur.next() {
			if i++; i%4096 == 0 {
				if err := p.step(ctx); err != nil {
					return err
				}
			}
			val = c.kind.appendEntry(val[:0], bulkSegment, cur.count())
			if err := fn(cur.key, val, nil); err != nil {
				return err
			}
		}
		return nil
	}
	err := c.eachRow(ctx, cat, 0, func(item *badger.Item, v []byte) error {
		k := item.Key()[1:]
		if err := below(k); err != nil {
			return err
		}
		if cur.valid() && bytes.Equal(cur.key, k) {
			cur.next() // shadowed by the row
		}
		return fn(k, v, item)
	})
	if err != nil {
		return err
	}
	return below(nil)
}

// backupBase writes the base's rows to w as a backup stream's lists of
// entries, at Badger version bulkVersion: below every row that shadows
// them, which a snapshot carries at their own versions.
func (c *corpus) backupBase(ctx context.Context, w io.Writer) error {
	b := c.getBase()
	if b == nil {
		return nil
	}
	defer b.put()
	const perList = 1 << 14
	list := &pb.KVList{Kv: make([]*pb.KV, 0, perList)}
	kvs := make([]pb.KV, perList)
	var buf []byte
	flush := func() error {
		if len(list.Kv) == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if buf, err = appendList(buf[:0], list); err != nil {
			return err
		}
		_, err = w.Write(buf)
		list.Kv = list.Kv[:0]
		return err
	}
	for cur := b.x.cursor(c.kind.keySize); cur.valid(); cur.next() {
		kv := &kvs[len(list.Kv)]
		kv.Key = c.kind.rowKey(kv.Key[:0], cur.key)
		kv.Value = c.kind.appendEntry(kv.Value[:0], bulkSegment, cur.count())
		kv.Version, kv.StreamId = bulkVersion, baseStreamID
		list.Kv = append(list.Kv, kv)
		if len(list.Kv) == perList {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// baseStreamID marks the base's rows in a snapshot (backupBase), so that a
// replica applying it can tell them from Badger's: Badger's own streams
// number their ranges from 1.
const baseStreamID = math.MaxUint32

// baseWriter writes a replica's base from a snapshot's base rows, which
// come last, in key order (backupBase). Other entries (Badger's rows, and
// every entry of a writer that does not mark its base rows) load as rows.
type baseWriter struct {
	c        *corpus
	expected uint64 // the snapshot's keys: sizes the directory
	w        *indexWriter
	last     []byte
	n        int   // rows written
	err      error // the first failure: the apply fails with it
}

// took reports whether kv is a base row.
func (b *baseWriter) took(kv *pb.KV) bool {
	return kv.StreamId == baseStreamID && kv.Version == bulkVersion && len(kv.Key) == 1+b.c.kind.keySize &&
		len(kv.Value) == b.c.kind.entrySize() && binary.BigEndian.Uint32(kv.Value) == bulkSegment && !deleted(kv)
}

// offer writes kv to the base if it is a base row, and reports whether it
// is (after a failure too: the apply fails, and no base row goes to
// Badger).
func (b *baseWriter) offer(kv *pb.KV) bool {
	if !b.took(kv) {
		return false
	}
	if b.err != nil {
		return true
	}
	key := kv.Key[1:]
	if b.last != nil && bytes.Compare(key, b.last) <= 0 {
		b.err = fmt.Errorf("%w: backup: the base's rows out of order", ErrCorrupt)
		return true
	}
	b.last = append(b.last[:0], key...)
	if b.w == nil {
		if b.w, b.err = newIndexFileWriter(b.c.dir, baseFile, b.c.kind, b.expected, []uint32{bulkSegment}); b.err != nil {
			b.err = classify("apply backup", b.err)
			return true
		}
	}
	_, n := b.c.kind.entry(kv.Value, 0)
	if err := b.w.addCount(key, n); err != nil {
		b.err = classify("apply backup", err)
	}
	if b.n++; b.n%4096 == 0 {
		reach("replica-base-row")
	}
	return true
}

// install puts the base in place and opens it (header version 0: never an
// index). Nil b or a snapshot without base rows: nothing to do.
func (b *baseWriter) install() error {
	if b == nil || b.w == nil {
		return nil
	}
	w := b.w
	b.w = nil
	if err := w.finish(0); err != nil {
		w.abort()
		return classify("apply backup", err)
	}
	x, err := w.install()
	if err != nil {
		return classify("apply backup", err)
	}
	b.c.setBase(x)
	return nil
}

func (b *baseWriter) abort() {
	if b != nil && b.w != nil {
		b.w.abort()
		b.w = nil
	}
}

// linkBaseIndex makes the base the lookup index of the version that
// committed it (the base's header names it): the same file, hard-linked,
// so no copy.
func (c *corpus) linkBaseIndex() error {
	tmp := filepath.Join(c.dir, indexFile+".tmp-base")
	os.Remove(tmp) // a crash's, if any
	if err := os.Link(filepath.Join(c.dir, baseFile), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, indexFile)); err != nil {
		os.Remove(tmp)
		return err
	}
	reach("index-renamed")
	if err := atomicfile.SyncDir(c.dir); err != nil {
		return err
	}
	x, err := loadIndex(c.dir, c.kind)
	if err != nil {
		return err
	}
	if !c.publishIndex(x, nil) {
		unmapFile(x.mapped)
	}
	return nil
}

// keyCursor walks a counted index's keys in order, rebuilding each whole.
type keyCursor struct {
	x   *index
	i   uint64 // the record
	b   uint64 // its directory bucket
	key []byte // its key
}

// cursor returns a cursor at the first key of counted index x, whose keys
// are size bytes.
func (x *index) cursor(size int) *keyCursor {
	c := &keyCursor{x: x, key: make([]byte, size)}
	c.load()
	return c
}

func (c *keyCursor) valid() bool { return c.i < c.x.n }

func (c *keyCursor) next() {
	c.i++
	c.load()
}

// load rebuilds record i's key: the bytes the record leaves out are its
// bucket's leading ones.
func (c *keyCursor) load() {
	x := c.x
	if c.i >= x.n {
		return
	}
	for x.dirAt(c.b+1) <= c.i {
		c.b++
	}
	head := c.b >> (x.bits - uint(8*x.skip))
	for j := int(x.skip) - 1; j >= 0; j-- {
		c.key[j] = byte(head)
		head >>= 8
	}
	copy(c.key[x.skip:], x.recs[c.i*x.rsz:c.i*x.rsz+x.klen])
}

// count is the count of the cursor's key.
func (c *keyCursor) count() uint64 {
	return c.x.count(c.i, c.x.recs[c.i*c.x.rsz:(c.i+1)*c.x.rsz])
}

// A base view (a corpus's with a base whose release is committed: a
// writer's, or a replica's that wrote its own) answers
// from the base and an overlay of Badger's rows, instead of an index
// rewritten after every later release: a small list imported beside a
// large corpus costs its rows, not another copy of every hash. Past
// maxOverlayRows rows the rebuild writes a whole index as before.
//
// It is exact for the same reason the base is (every row of a key the base
// holds carries the base's entry): a key's row, if any, answers for it,
// and the base otherwise. The overlay holds every row of the imports
// committed by its version; rows written since are an import's, invisible
// until a commit that makes the view stale, or a collection's, which drops
// only invisible entries. Values are read against the view's catalogue, so
// a delete or a correction keeps the view (followCatalog), but for the
// base's own release: its delete makes the view stale, so that a whole
// index replaces the base's mapping.

// overlay is a base view's Badger rows, sorted.
type overlay struct {
	version uint64   // the corpus version it was read at (see writeIndex)
	size    int      // key bytes
	keys    []byte   // packed, ascending
	offs    []uint32 // row i's value is vals[offs[i]:offs[i+1]]
	vals    []byte
}

// newOverlay returns an empty overlay of keys of size bytes, read at
// corpus version v.
func newOverlay(size int, v uint64) *overlay {
	return &overlay{version: v, size: size, offs: []uint32{0}}
}

// add appends key's row (keys come in ascending order); it copies both.
func (o *overlay) add(key, val []byte) {
	o.keys = append(o.keys, key...)
	o.vals = append(o.vals, val...)
	o.offs = append(o.offs, uint32(len(o.vals)))
}

func (o *overlay) len() int                      { return len(o.offs) - 1 }
func (o *overlay) key(i int) []byte              { return o.keys[i*o.size : (i+1)*o.size] }
func (o *overlay) val(i int) []byte              { return o.vals[o.offs[i]:o.offs[i+1]] }
func rangeOf(key []byte) uint32                  { return uint32(key[0])<<12 | uint32(key[1])<<4 | uint32(key[2])>>4 }
func (o *overlay) search(f func(i int) bool) int { return sort.Search(o.len(), f) }

// answersFor reports whether a base view with this overlay answers for
// catalogue cat: no import committed since it was read, the base's
// release committed (so a base view reads the base's counts as they are).
func (o *overlay) answersFor(cat *catalog) bool {
	return o.version >= cat.importVersion && cat.segments[bulkSegment] != nil
}

// maxOverlayRows is how many rows a base view takes over a base of n keys.
func (c *corpus) maxOverlayRows(n uint64) int {
	if c.opts.maxOverlay != 0 {
		return c.opts.maxOverlay
	}
	return int(max(1<<16, min(n/16, 1<<22)))
}

var errOverlayFull = errors.New("overlay full")

// buildBaseView publishes a base view for cat if the corpus has a base
// whose release cat commits and Badger holds few enough rows; it reports
// whether it did. Callers hold acquire.
func (c *corpus) buildBaseView(ctx context.Context, cat *catalog) (bool, error) {
	if cat.segments[bulkSegment] == nil {
		return false, nil
	}
	if c.index.overlayFull.Load() == cat.importVersion+1 {
		return false, nil
	}
	b := c.getBase()
	if b == nil {
		return false, nil
	}
	limit := c.maxOverlayRows(b.x.n)
	b.put()
	if limit < 0 {
		return false, nil
	}
	start := time.Now()
	o := newOverlay(c.kind.keySize, cat.version)
	err := c.eachRow(ctx, cat, 0, func(item *badger.Item, v []byte) error {
		if o.len() >= limit {
			return errOverlayFull
		}
		o.add(item.Key()[1:], v)
		return nil
	})
	if errors.Is(err, errOverlayFull) {
		c.index.overlayFull.Store(cat.importVersion + 1)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// A mapping of its own: the view's index is retired (unmapped) when
	// replaced, the base's when dropped.
	x, err := loadIndexFile(c.dir, baseFile, c.kind)
	if err != nil {
		return false, nil // dropped meanwhile: a whole index
	}
	is := c.index
	is.viewMu.Lock()
	published := false
	// On a replica only for the catalogue the rows were read for: a
	// backup applied meanwhile may have brought rows without a new import
	// version (see publishIndex), and it has the view rebuilt.
	if now := c.cat.Load(); o.answersFor(now) && (!c.opts.Follower || now == cat) {
		c.installView(&view{cat: now, idx: x, over: o})
		published = true
	}
	is.viewMu.Unlock()
	if !published {
		unmapFile(x.mapped)
	}
	c.log.Info("lookup index built over the base", "base", x.n, "rows", o.len(), "corpus_version", o.version,
		"current", published, "duration", time.Since(start))
	return true, nil
}

// count answers a counted kind's key from view v: its count (countUnknown:
// read Badger) and whether v holds the key at all.
func (v *view) count(key []byte) (uint64, bool) {
	o := v.over
	if o == nil {
		return v.idx.findCount(key)
	}
	if i := o.search(func(i int) bool { return bytes.Compare(o.key(i), key) >= 0 }); i < o.len() && bytes.Equal(o.key(i), key) {
		return v.cat.count(o.val(i)), true
	}
	return v.idx.findCount(key) // the base's release is visible: see overlay.answersFor
}

// eachInRange is index.eachInRange for view v: a base view merges its
// overlay's rows of the range, each in place of the base's entry.
func (v *view) eachInRange(prefix uint32, key []byte, fn func(key []byte, count uint64)) bool {
	o := v.over
	if o == nil {
		return v.idx.eachInRange(prefix, key, fn)
	}
	lo := o.search(func(i int) bool { return rangeOf(o.key(i)) >= prefix })
	hi := o.search(func(i int) bool { return rangeOf(o.key(i)) > prefix })
	return mergeRange(v.idx, o, lo, hi, v.cat, prefix, key, fn)
}

// mergeRange calls fn, in ascending order, for the keys of range prefix
// in base x (nil: none; key is the scratch its keys are rebuilt in) and
// in rows [i, hi) of o, a row answering in place of the base's entry for
// its key, each with the count cat answers (keys of count 0 left out). It
// reports x.eachInRange's answer. A base view's ranges and Passwords.Range's
// fallback (Badger's rows of the range over the base) both merge so.
func mergeRange(x *index, o *overlay, i, hi int, cat *catalog, prefix uint32, key []byte, fn func(key []byte, count uint64)) bool {
	row := func() {
		if n := cat.count(o.val(i)); n > 0 {
			fn(o.key(i), n)
		}
		i++
	}
	done := true
	if x != nil {
		baseVisible := cat.segments[bulkSegment] != nil
		done = x.eachInRange(prefix, key, func(k []byte, n uint64) {
			for i < hi && bytes.Compare(o.key(i), k) < 0 {
				row()
			}
			if i < hi && bytes.Equal(o.key(i), k) {
				row() // in place of the base's
				return
			}
			if baseVisible {
				fn(k, n)
			}
		})
	}
	for i < hi {
		row()
	}
	return done
}
