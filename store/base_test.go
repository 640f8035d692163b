package store

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/pb"

	"github.com/breachd/breachd"
)

// TestBaseReferences: a base dropped while a reader holds it stays mapped
// and answers until the reader lets go; the file goes at once, and no new
// reader gets it. (TestBaseDroppedUnderReaders drives the same through
// lookups and a delete, where the window is too short to hit on purpose.)
func TestBaseReferences(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := openSHA1(t, dir, IndexOff)
	recs := sha1Records("ref", 0, 1000, 1, func(i int) uint64 { return uint64(i + 1) })
	importRelease(t, p, "R", recs)
	b := p.getBase()
	if b == nil {
		t.Fatal("no base after a first release in hash order")
	}
	if err := p.dropBase(true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, baseFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the base file after its drop: %v", err)
	}
	if p.getBase() != nil {
		t.Error("a reader got the base after its drop")
	}
	for _, r := range recs {
		if n, ok := b.x.findCount(r.Hash[:20]); !ok || n != r.Count {
			t.Fatalf("the dropped base, still held, answers %d, %v; want %d", n, ok, r.Count)
		}
	}
	b.put()
	if n := b.refs.Load(); n != 0 {
		t.Errorf("%d references after the last reader's put, want 0", n)
	}
}

// TestSortedGets checks the import's in-order reader against corpus.get
// over a base, rows shadowing it and keys neither holds: asked in
// ascending order with gaps of every length (so that it steps, seeks and
// stands still), then again with keys asked twice and backwards.
func TestSortedGets(t *testing.T) {
	t.Parallel()
	p := openSHA1(t, t.TempDir(), IndexOff)
	hash := func(i int) (h [20]byte) { return sha1.Sum(fmt.Appendf(nil, "sorted-%d", i)) }
	release := func(name string, from, to, every int) {
		importRelease(t, p, name, sha1Records("sorted", from, to, every, func(i int) uint64 { return uint64(i%97 + 1) }))
	}
	release("Base", 0, 3000, 1)     // the base
	release("Rows", 0, 3600, 7)     // rows over some of its keys, and 86 of their own
	release("Dense", 1000, 1200, 1) // a stretch where every key has a row
	if p.getBase() == nil {
		t.Fatal("no base")
	}
	var keys [][]byte
	for i := range 4000 { // 3,600 to 4,000: held by nobody
		h := hash(i)
		keys = append(keys, h[:])
	}
	slices.SortFunc(keys, bytes.Compare)
	type answer struct {
		found bool
		val   string
	}
	err := p.db.View(func(txn *badger.Txn) error {
		want := func(key []byte) answer {
			var a answer
			found, err := p.get(txn, key, func(v []byte) error { a.val = string(v); return nil })
			if err != nil {
				t.Fatal(err)
			}
			a.found = found
			return a
		}
		check := func(name string, order [][]byte) {
			g := p.sortedGets(txn)
			defer g.close()
			for i, key := range order {
				var got answer
				found, err := g.get(key, func(v []byte) error { got.val = string(v); return nil })
				if err != nil {
					t.Fatal(err)
				}
				got.found = found
				if w := want(key); got != w {
					t.Fatalf("%s: key %d of %d: got %+v, want %+v", name, i, len(order), got, w)
				}
			}
		}
		for gap := 1; gap <= 9; gap++ {
			var order [][]byte
			for i := 0; i < len(keys); i += gap {
				order = append(order, keys[i])
			}
			check(fmt.Sprintf("every %d", gap), order)
		}
		r := rand.New(rand.NewPCG(1, 2))
		var order [][]byte
		for range 3000 {
			order = append(order, keys[r.IntN(len(keys))]) // repeats, backwards
		}
		check("random", order)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReplicaOfUnmarkedBase: a snapshot whose base rows are not marked (a
// writer from before replicas kept a base) loads them as Badger's rows, as
// replicas did then; such a replica has the writer's record of a base and
// no file, and opens and answers all the same.
func TestReplicaOfUnmarkedBase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	o := DefaultOptions()
	o.Index = IndexOff
	w := openSHA1(t, t.TempDir(), o.Index)
	recs := sha1Records("unmarked", 0, 2000, 1, func(i int) uint64 { return uint64(i + 1) })
	importRelease(t, w, "R", recs)
	var snap bytes.Buffer
	if _, err := w.Backup(ctx, &snap, 0); err != nil {
		t.Fatal(err)
	}
	old, marked := unmarkBase(t, &snap) // the same stream, as an older writer's
	if marked != len(recs) {
		t.Fatalf("%d marked base rows in the snapshot, want %d", marked, len(recs))
	}
	ro := o
	ro.Follower = true
	dir := t.TempDir()
	r, err := OpenPasswords(ctx, dir, breachd.SHA1, ro)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ApplyBackup(ctx, old, uint64(len(recs))); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, baseFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a base file from unmarked rows: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if r, err = OpenPasswords(ctx, dir, breachd.SHA1, ro); err != nil {
		t.Fatalf("reopening the replica: %v", err)
	}
	defer r.Close()
	for _, rec := range recs {
		h, _ := breachd.PasswordHashFromBytes(breachd.SHA1, rec.Hash[:20])
		if exp, err := r.Lookup(ctx, h); err != nil || exp.Count != rec.Count {
			t.Fatalf("Lookup = %+v, %v; want count %d", exp, err, rec.Count)
		}
	}
}

// unmarkBase returns backup stream r with its base rows unmarked, as a
// writer from before replicas kept a base wrote them, and how many.
func unmarkBase(tb testing.TB, r io.Reader) (*bytes.Buffer, int) {
	tb.Helper()
	var out bytes.Buffer
	marked := 0
	if err := eachList(r, func(list *pb.KVList) error {
		for _, kv := range list.Kv {
			if kv.StreamId == baseStreamID {
				kv.StreamId = 0
				marked++
			}
		}
		buf, err := appendList(nil, list)
		out.Write(buf)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	return &out, marked
}

// TestReplicaSnapshotTiming measures a replica's first snapshot of a
// password corpus of one release (its base): applied as now (the replica
// writes a base of its own and serves a base view) against the same stream
// unmarked (the base's rows loaded into Badger, and a whole index built
// from them, as replicas did before), alternated, each with the lookup
// index built inline. It runs only with BREACHD_SNAPSHOT_HASHES (the
// corpus size); bench/README.md records it.
func TestReplicaSnapshotTiming(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("BREACHD_SNAPSHOT_HASHES"))
	if n == 0 {
		t.Skip("set BREACHD_SNAPSHOT_HASHES to a corpus size")
	}
	ctx := context.Background()
	o := DefaultOptions()
	o.Index = IndexManual
	w := openSHA1(t, t.TempDir(), o.Index)
	importRelease(t, w, "R", sha1Records("timing", 0, n, 1, func(i int) uint64 { return uint64(i%1000 + 1) }))
	var snap bytes.Buffer
	info, err := w.Backup(ctx, &snap, 0)
	if err != nil {
		t.Fatal(err)
	}
	unmarked, _ := unmarkBase(t, bytes.NewReader(snap.Bytes()))
	ro := DefaultOptions()
	ro.Follower, ro.Index = true, IndexInline
	apply := func(stream []byte) (time.Duration, int64) {
		dir := t.TempDir()
		r, err := OpenPasswords(ctx, dir, breachd.SHA1, ro)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := r.ApplyBackup(ctx, bytes.NewReader(stream), info.Keys); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		var size int64
		filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if fi, err := d.Info(); err == nil {
					size += fi.Size()
				}
			}
			return nil
		})
		os.RemoveAll(dir)
		return took, size
	}
	for range 2 {
		bt, bs := apply(snap.Bytes())
		rt, rs := apply(unmarked.Bytes())
		t.Logf("%d hashes: a base of its own %v, %d MiB; rows and a whole index %v, %d MiB (%.1fx the time, %.1fx the disk)",
			n, bt.Round(time.Millisecond), bs>>20, rt.Round(time.Millisecond), rs>>20, float64(rt)/float64(bt), float64(rs)/float64(bs))
	}
}

// sha1Records returns the records of the SHA-1 of "label-i" for i from
// from to to (excluded) by every, each of count count(i), in hash order.
func sha1Records(label string, from, to, every int, count func(i int) uint64) []breachd.PasswordRecord {
	var recs []breachd.PasswordRecord
	for i := from; i < to; i += every {
		var r breachd.PasswordRecord
		h := sha1.Sum(fmt.Appendf(nil, "%s-%d", label, i))
		copy(r.Hash[:], h[:])
		r.Count = count(i)
		recs = append(recs, r)
	}
	slices.SortFunc(recs, func(a, b breachd.PasswordRecord) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
	return recs
}

// openSHA1 opens a SHA-1 corpus in dir with the default options but the
// index mode, closed at the test's end.
func openSHA1(tb testing.TB, dir string, index IndexMode) *Passwords {
	o := DefaultOptions()
	o.Index = index
	p, err := OpenPasswords(context.Background(), dir, breachd.SHA1, o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// importRelease imports recs into p as release name, in batches of 100,000.
func importRelease(tb testing.TB, p *Passwords, name string, recs []breachd.PasswordRecord) {
	tb.Helper()
	if _, err := p.Import(context.Background(), breachd.Breach{Name: name, Title: name}, uint64(len(recs)), func(yield func([]breachd.PasswordRecord, error) bool) {
		for chunk := range slices.Chunk(recs, 100_000) {
			if !yield(chunk, nil) {
				return
			}
		}
	}); err != nil {
		tb.Fatal(err)
	}
}
