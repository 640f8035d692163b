package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/internal/logtest"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// TestReplicaBackups follows a replica through a writer's life: a
// snapshot, a delta with a new breach and an import that was abandoned, a
// delta with a deletion; each applied twice (idempotent); answers equal
// the writer's at each version, and survive the replica's reopen.
func TestReplicaBackups(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := open(t, t.TempDir(), options(0))
	defer w.Close()
	fo := options(0)
	fo.Follower = true
	rdir := t.TempDir()
	r := open(t, rdir, fo)
	a, b, c := storetest.Digests("a", 8000), storetest.Digests("b", 5000), storetest.Digests("c", 3000)
	importAll(t, w, storetest.Breach("Alpha"), a, 5000)

	var since uint64
	ship := func(want uint64) {
		t.Helper()
		var buf bytes.Buffer
		info, err := w.Backup(ctx, &buf, since)
		if err != nil || info.Version != want {
			t.Fatalf("Backup(since %d) = %+v, %v; want version %d", since, info, err, want)
		}
		for i := range 2 { // a second apply changes nothing
			v, err := r.ApplyBackup(ctx, bytes.NewReader(buf.Bytes()), info.Keys)
			if err != nil || v != want {
				t.Fatalf("ApplyBackup #%d = %d, %v; want version %d", i+1, v, err, want)
			}
		}
		since = info.Upto
		// The replica counts what the writer counts: no abandoned
		// import's rows, and fewer after a delete.
		if rk, wk := r.Stats().Keys, w.Stats().Keys; rk != wk {
			t.Fatalf("version %d: the replica counts %d keys, the writer %d", want, rk, wk)
		}
	}
	ship(1)
	wantBreaches(t, r, a, "Alpha")
	wantBreaches(t, r, c)

	// An import abandoned on the writer ships as invisible rows.
	fail := func(yield func([]breachd.Digest, error) bool) {
		if yield(c, nil) {
			yield(nil, context.Canceled)
		}
	}
	if _, err := w.Import(ctx, storetest.Breach("Gamma"), fail); err == nil {
		t.Fatal("an import whose batches failed committed")
	}
	importAll(t, w, storetest.Breach("Beta"), append(b, a[:100]...), 5000)
	ship(2)
	wantBreaches(t, r, a[:100], "Alpha", "Beta")
	wantBreaches(t, r, b, "Beta")
	wantBreaches(t, r, c)

	if _, _, err := w.DeleteBreach(ctx, "Alpha"); err != nil {
		t.Fatal(err)
	}
	ship(3)
	wantBreaches(t, r, a[:100], "Beta")
	wantBreaches(t, r, a[100:])
	if got, _, _ := r.Breaches(ctx); len(got) != 1 || got[0].Name != "Beta" {
		t.Fatalf("replica catalogue after the delete: %v", names(got))
	}
	// A follower takes backups only: an import would write rows of its own.
	if _, err := r.Import(ctx, storetest.Breach("Local"), storetest.Batches(c, 100, nil)); !errors.Is(err, store.ErrFollower) {
		t.Fatalf("an import into a replica: %v, want %v", err, store.ErrFollower)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r = open(t, rdir, fo)
	defer r.Close()
	wantBreaches(t, r, b, "Beta")
	if v := r.Version(); v < 3 {
		t.Fatalf("reopened replica at version %d, want 3 or more", v)
	}
	if _, err := w.ApplyBackup(ctx, bytes.NewReader(nil), 0); err == nil {
		t.Fatal("a writer's store applied a backup")
	}
}

// TestPasswordReplica ships a password corpus as TestReplicaBackups ships
// the email one: a snapshot, then a delta with a second release; the
// replica's counts and ranges equal the writer's; it takes no import.
func TestPasswordReplica(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k := breachd.SHA1
	w := openPw(t, t.TempDir(), k, options(0))
	defer w.Close()
	fo := options(0)
	fo.Follower = true
	r := openPw(t, t.TempDir(), k, fo)
	defer r.Close()
	want := map[string]uint64{}
	var since uint64
	for i, recs := range [][]breachd.PasswordRecord{pwRecords(k, "a", 3000, 1), pwRecords(k, "a", 1000, 5)} {
		if _, err := w.Import(ctx, release(fmt.Sprintf("PP-%d", i)), 0, pwBatches(recs, 500, nil)); err != nil {
			t.Fatal(err)
		}
		countsOf(k, want, recs)
		var buf bytes.Buffer
		info, err := w.Backup(ctx, &buf, since)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := r.ApplyBackup(ctx, &buf, info.Keys); err != nil || v != uint64(i+1) {
			t.Fatalf("ApplyBackup = %d, %v; want version %d", v, err, i+1)
		}
		since = info.Upto
		wantCounts(t, r, k, want, uint64(i+1))
	}
	if _, err := r.Import(ctx, release("Local"), 0, pwBatches(pwRecords(k, "x", 10, 1), 10, nil)); !errors.Is(err, store.ErrFollower) {
		t.Fatalf("an import into a replica's password corpus: %v, want %v", err, store.ErrFollower)
	}
}

// TestReplicaIndexDelta: a replica whose lookup index is current merges
// each applied backup into it (a delta over the index, no rebuild from
// Badger), answers exactly from it through imports, a delete and a
// correction, and compacting the index (rewriting it with its delta, again
// without Badger) changes no answer.
func TestReplicaIndexDelta(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := open(t, t.TempDir(), options(0))
	defer w.Close()
	fo := options(0)
	fo.Follower, fo.Index = true, store.IndexInline
	r := open(t, t.TempDir(), fo)
	defer r.Close()
	ship := shipper(t, func() backupCorpus { return w }, func() applyCorpus { return r })
	a, b, c := storetest.Digests("a", 3000), storetest.Digests("b", 2000), storetest.Digests("c", 500)
	importAll(t, w, storetest.Breach("Alpha"), a, 1000)
	ship() // the snapshot: the index is built inline
	if st := r.Stats().Index; !st.Current || st.Delta != 0 {
		t.Fatalf("after the snapshot the index is %+v, want current with no delta", st)
	}
	importAll(t, w, storetest.Breach("Beta"), append(slices.Clone(b), a[:500]...), 1000)
	ship()
	if _, _, err := w.DeleteBreach(ctx, "Alpha"); err != nil {
		t.Fatal(err)
	}
	ship()
	importAll(t, w, storetest.Breach("Gamma"), append(slices.Clone(c), b[:10]...), 1000)
	ship()
	st := r.Stats().Index
	if !st.Current || st.Delta == 0 || st.Version != 1 {
		t.Fatalf("after three deltas the index is %+v, want current at version 1 with the deltas merged in", st)
	}
	check := func(when string) {
		t.Helper()
		wantBreaches(t, r, a[500:])
		wantBreaches(t, r, a[:500], "Beta")
		wantBreaches(t, r, b[10:], "Beta")
		wantBreaches(t, r, b[:10], "Beta", "Gamma")
		wantBreaches(t, r, c, "Gamma")
		wantBreaches(t, r, storetest.Digests("outsider", 500))
		if !r.Stats().Index.Current {
			t.Fatalf("%s: the lookups did not read the index", when)
		}
	}
	check("with the delta")
	if err := r.BuildIndex(ctx); err != nil { // compacts
		t.Fatal(err)
	}
	if st := r.Stats().Index; !st.Current || st.Delta != 0 || st.Version != r.Version() {
		t.Fatalf("after compaction the index is %+v, want current at version %d with no delta", st, r.Version())
	}
	check("after compaction")
}

// TestBackupDuringCollection: a backup does not wait for the collection
// that follows a delete (it once waited the whole collection, 15–25 s for
// 297k accounts, before a replica heard of the delete), nor for an import
// in progress, and still holds exactly one corpus version: a replica that
// applies it answers as the writer does at that version.
func TestBackupDuringCollection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	wo := store.WithHook(options(0), func(point string) {
		if point == "collect-row" {
			once.Do(func() { close(held); <-release })
		}
	})
	w := open(t, t.TempDir(), wo)
	defer w.Close()
	fo := options(0)
	fo.Follower = true
	r := open(t, t.TempDir(), fo)
	a, b := storetest.Digests("a", 5000), storetest.Digests("b", 5000)
	importAll(t, w, storetest.Breach("Alpha"), a, 1000)
	importAll(t, w, storetest.Breach("Beta"), b, 1000)
	var buf bytes.Buffer
	info, err := w.Backup(ctx, &buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ApplyBackup(ctx, &buf, info.Keys); err != nil {
		t.Fatal(err)
	}
	deleted := make(chan error, 1)
	go func() { // DeleteBreach waits for the collection (unless its caller stops waiting)
		_, _, err := w.DeleteBreach(ctx, "Alpha")
		deleted <- err
	}()
	<-held // the delete is committed; the collection of its rows is under way, and stays so
	defer func() {
		close(release)
		if err := <-deleted; err != nil {
			t.Error(err)
		}
	}()
	// An import waits for the collection; the backup does not.
	importDone := make(chan error, 1)
	go func() {
		_, err := w.Import(ctx, storetest.Breach("Gamma"), storetest.Batches(storetest.Digests("c", 100), 100, nil))
		importDone <- err
	}()
	buf.Reset()
	done := make(chan error, 1)
	go func() {
		var err error
		info, err = w.Backup(ctx, &buf, info.Upto)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a backup waits for the collection after a delete")
	}
	if info.Version != 3 {
		t.Fatalf("the backup holds version %d, want 3 (the delete's)", info.Version)
	}
	if v, err := r.ApplyBackup(ctx, &buf, info.Keys); err != nil || v != 3 {
		t.Fatalf("ApplyBackup = %d, %v; want version 3", v, err)
	}
	wantBreaches(t, r, a[:500])
	wantBreaches(t, r, b[:500], "Beta")
	select {
	case err := <-importDone:
		t.Fatalf("an import committed during the collection: %v", err)
	default:
	}
}

// TestWaitNamesTheRunningChange: a change that waits for another (an
// import whose client trickles its batches holds the corpus until it
// commits) is logged with what it waits for, and a caller that gives up is
// told which change it waited for. (Before, a second import waited in
// silence.)
func TestWaitNamesTheRunningChange(t *testing.T) {
	t.Parallel()
	var logs logtest.Buffer
	o := options(0)
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s := open(t, t.TempDir(), o)
	defer s.Close()
	release := make(chan struct{})
	started := make(chan struct{})
	trickle := func(yield func([]breachd.Digest, error) bool) {
		if !yield(storetest.Digests("slow", 10), nil) {
			return
		}
		close(started)
		<-release
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Import(context.Background(), storetest.Breach("Slow"), trickle)
		done <- err
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := s.Import(ctx, storetest.Breach("Second"), storetest.Batches(storetest.Digests("second", 10), 10, nil))
	if err == nil || !strings.Contains(err.Error(), "import of Slow") {
		t.Errorf("an import that gave up waiting: %v; want the running import named", err)
	}
	if !strings.Contains(logs.String(), "waiting for the running change to end") || !strings.Contains(logs.String(), "running=\"import of Slow\"") {
		t.Errorf("the wait was not logged with what it waits for:\n%s", logs.String())
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestCorpusDirectoriesPrivate: the directories a corpus is created in are
// its owner's alone (0700), whatever the files' modes: no other local user
// can read the digests. (They were 0755.)
func TestCorpusDirectoriesPrivate(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	s := open(t, store.EmailDir(data), options(0))
	defer s.Close()
	for _, d := range []string{data, store.EmailDir(data)} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o700 {
			t.Errorf("%s has mode %v, want 0700", d, perm)
		}
	}
}

// TestReplicaDeleteThroughCompaction ships a delete that Badger's
// compaction on the writer has already folded away: a breach's catalogue
// records and rows deleted, then every table compacted before the next
// delta. The delta must still carry the deletions: the catalogue's as
// markers, which compaction keeps, and the rows' because Backup holds the
// versions since the last delta from compaction. Before, it carried none
// of them, and the replica went on answering the deleted breach.
//
// The daemon's writer restarts, and publishes its next delta only once it
// has reconnected: a Published corpus holds from open.
func TestReplicaDeleteThroughCompaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	wdir := t.TempDir()
	w := open(t, wdir, options(0))
	defer func() { w.Close() }()
	fo := options(0)
	fo.Follower = true
	r := open(t, t.TempDir(), fo)
	defer r.Close()
	a, b := storetest.Digests("a", 3000), storetest.Digests("b", 2000)
	importAll(t, w, storetest.Breach("Alpha"), a, 1000)
	importAll(t, w, storetest.Breach("Beta"), append(b, a[:500]...), 1000)
	var since uint64
	ship := func() {
		t.Helper()
		var buf bytes.Buffer
		info, err := w.Backup(ctx, &buf, since)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.ApplyBackup(ctx, &buf, info.Keys); err != nil {
			t.Fatal(err)
		}
		since = info.Upto
	}
	ship()
	if err := w.CompactNow(); err != nil { // what the rows were written as is compacted: nothing to hold yet
		t.Fatal(err)
	}
	if _, _, err := w.DeleteBreach(ctx, "Beta"); err != nil {
		t.Fatal(err)
	}
	if err := w.CompactNow(); err != nil {
		t.Fatal(err)
	}
	ship()
	if got, _, _ := r.Breaches(ctx); len(got) != 1 || got[0].Name != "Alpha" {
		t.Fatalf("replica catalogue after the delete: %v, want [Alpha]", names(got))
	}
	wantBreaches(t, r, b)
	wantBreaches(t, r, a, "Alpha")
	if rk, wk := r.Stats().Keys, w.Stats().Keys; rk != wk {
		t.Fatalf("the replica counts %d keys, the writer %d", rk, wk)
	}
	sameRows(t, w, r)

	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	wo := options(0)
	wo.Published = true
	w = open(t, wdir, wo)
	if _, _, err := w.DeleteBreach(ctx, "Alpha"); err != nil {
		t.Fatal(err)
	}
	if err := w.CompactNow(); err != nil {
		t.Fatal(err)
	}
	ship()
	if got, _, _ := r.Breaches(ctx); len(got) != 0 {
		t.Fatalf("replica catalogue after the writer restarted and deleted Alpha: %v, want none", names(got))
	}
	wantBreaches(t, r, a)
	sameRows(t, w, r)
}

// sameRows checks that the replica holds as many rows as its writer: the
// rows a collection deleted are deleted on the replica too.
func sameRows(t *testing.T, w, r *store.Store) {
	t.Helper()
	wn, err := w.Rows()
	if err != nil {
		t.Fatal(err)
	}
	rn, err := r.Rows()
	if err != nil {
		t.Fatal(err)
	}
	if rn != wn {
		t.Fatalf("the replica holds %d rows, the writer %d", rn, wn)
	}
}

// TestReplicaViewCurrentMidApply: a backup applied while the replica's
// index had no current view keeps no rows for it; if a build makes the
// view current for the catalogue before while the backup applies, the
// backup's rows must still reach the index (a rebuild), never a view
// published without them, which would answer "not exposed" for them. Not
// parallel: it sets the store's crash-point hook.
func TestReplicaViewCurrentMidApply(t *testing.T) {
	ctx := t.Context()
	// Set before any store runs (the hook is a plain variable), armed
	// only while the delta applies.
	var r *store.Store
	var armed, built atomic.Bool
	store.SetCrashPoint(func(name string) {
		if armed.Load() && strings.HasPrefix(name, "filter-") && built.CompareAndSwap(false, true) {
			if err := r.BuildIndex(ctx); err != nil {
				t.Error(err)
			}
		}
	})
	defer store.SetCrashPoint(nil) // after the stores close
	w := open(t, t.TempDir(), options(0))
	defer w.Close()
	fo := options(0)
	fo.Follower, fo.Index = true, store.IndexManual // builds only when asked
	r = open(t, t.TempDir(), fo)
	defer r.Close()
	ship := shipper(t, func() backupCorpus { return w }, func() applyCorpus { return r })
	a, b := storetest.Digests("a", 3000), storetest.Digests("b", 200)
	importAll(t, w, storetest.Breach("Alpha"), a, 1000)
	ship() // no view: nothing builds one
	if r.Stats().Index.Current {
		t.Fatal("a manual index is current after the snapshot")
	}
	importAll(t, w, storetest.Breach("Beta"), b, 1000)
	// While the delta applies, before it publishes, build the index: of
	// the catalogue before the delta.
	armed.Store(true)
	ship()
	armed.Store(false)
	if !built.Load() {
		t.Fatal("the delta's apply passed no filter crash point: the test built nothing mid-apply")
	}
	wantBreaches(t, r, b, "Beta")
	wantBreaches(t, r, a, "Alpha")
	if err := r.BuildIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if !r.Stats().Index.Current {
		t.Fatalf("the index is not current after a build: %+v", r.Stats().Index)
	}
	wantBreaches(t, r, b, "Beta")
}

// TestReplicaMergedOverDelta: a backup that changes more rows than the
// replica's delta bound is spilled in runs and merged with the index file,
// deleted rows included (a delete's collection), the newest version of a
// row winning; every answer is exact and the index current after.
func TestReplicaMergedOverDelta(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := open(t, t.TempDir(), options(0))
	defer w.Close()
	var logs logtest.Buffer
	fo := store.WithMaxDelta(options(0), 100)
	fo.Follower, fo.Index, fo.Logger = true, store.IndexInline, slog.New(slog.NewTextHandler(&logs, nil))
	r := open(t, t.TempDir(), fo)
	defer r.Close()
	ship := shipper(t, func() backupCorpus { return w }, func() applyCorpus { return r })
	a, b := storetest.Digests("a", 1000), storetest.Digests("b", 800)
	importAll(t, w, storetest.Breach("Alpha"), a, 1000)
	ship() // the snapshot: the index built inline
	importAll(t, w, storetest.Breach("Beta"), append(slices.Clone(b), a[:300]...), 100)
	logs.Reset()
	ship() // 1,100 rows changed: 11 runs
	if !strings.Contains(logs.String(), `msg="lookup index merged"`) || !strings.Contains(logs.String(), "current=true") {
		t.Fatalf("Beta's backup was not merged with the index file:\n%s", logs.String())
	}
	if st := r.Stats().Index; !st.Current || st.Delta != 0 {
		t.Fatalf("after the merge the index is %+v, want current with no delta", st)
	}
	wantBreaches(t, r, a[:300], "Alpha", "Beta")
	wantBreaches(t, r, a[300:], "Alpha")
	wantBreaches(t, r, b, "Beta")
	// The delete's collection rewrites the shared rows and deletes
	// Alpha's own: 1,000 rows, deletions among them, in runs again.
	if _, _, err := w.DeleteBreach(ctx, "Alpha"); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	ship()
	if !r.Stats().Index.Current {
		t.Fatalf("after the delete's backup the index is not current: %+v\n%s", r.Stats().Index, logs.String())
	}
	wantBreaches(t, r, a[:300], "Beta")
	wantBreaches(t, r, a[300:])
	wantBreaches(t, r, b, "Beta")
	wantBreaches(t, r, storetest.Digests("outsider", 500))
	t.Log(logs.String())
}
