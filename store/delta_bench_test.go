package store_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// replicaPair opens a writer and a replica (its index built inline) for
// the measurements run with BREACHD_DELTA_KEYS, the corpus size they
// return; without it they are skipped.
func replicaPair(t *testing.T) (n int, w, r *store.Store) {
	n, _ = strconv.Atoi(os.Getenv("BREACHD_DELTA_KEYS"))
	if n == 0 {
		t.Skip("set BREACHD_DELTA_KEYS to a corpus size")
	}
	wo := store.DefaultOptions()
	wo.BackgroundShare = 1
	w = open(t, t.TempDir(), wo)
	t.Cleanup(func() { w.Close() })
	ro := store.DefaultOptions()
	ro.Follower, ro.Index, ro.BackgroundShare = true, store.IndexInline, 1
	r = open(t, t.TempDir(), ro)
	t.Cleanup(func() { r.Close() })
	return n, w, r
}

// TestReplicaDeltaTiming measures what a replica spends on its lookup index
// after applying a backup: merging the backup's rows into the index (now)
// against rebuilding the index from Badger (before). It runs only with
// BREACHD_DELTA_KEYS (the corpus size; the delta is 1%, at least 1,000
// rows): bench/README.md records it at 10M keys.
func TestReplicaDeltaTiming(t *testing.T) {
	n, w, r := replicaPair(t)
	ctx := t.Context()
	var upto uint64
	ship := func() time.Duration {
		var buf bytes.Buffer
		info, err := w.Backup(ctx, &buf, upto)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := r.ApplyBackup(ctx, &buf, info.Keys); err != nil {
			t.Fatal(err)
		}
		upto = info.Upto
		return time.Since(start)
	}
	importAll(t, w, storetest.Breach("Base"), storetest.Digests("base", n), 10_000)
	t.Logf("snapshot of %d keys applied (index built inline) in %v", n, ship())
	delta := max(n/100, 1000)
	importAll(t, w, storetest.Breach("Delta"), storetest.Digests("delta", delta), 10_000)
	applied := ship()
	st := r.Stats().Index
	if !st.Current || st.Delta == 0 {
		t.Fatalf("the delta was not merged into the index: %+v", st)
	}
	rebuilt, err := r.RebuildIndexFromBadger(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := r.BuildIndex(ctx); err != nil { // compaction
		t.Fatal(err)
	}
	t.Logf("a delta of %d rows over %d keys: applied with its rows merged into the index in %v (index current at once); "+
		"a rebuild from Badger, as after every apply before, takes %v more; compacting the merged index %v",
		delta, n, applied, rebuilt, time.Since(start))
}

// BenchmarkBackup measures what a writer spends shipping a replica: a
// delta of ten rows, and a snapshot, over a corpus of 200,000 accounts.
// Badger's stream takes a 32 MiB buffer per goroutine and per key range
// read, whatever the rows it finds (store.backupStream).
func BenchmarkBackup(b *testing.B) {
	o := store.DefaultOptions()
	o.BackgroundShare = 1
	w := open(b, b.TempDir(), o)
	defer w.Close()
	importAll(b, w, storetest.Breach("Base"), storetest.Digests("base", 200_000), 10_000)
	snap, err := w.Backup(b.Context(), io.Discard, 0)
	if err != nil {
		b.Fatal(err)
	}
	importAll(b, w, storetest.Breach("Delta"), storetest.Digests("delta", 10), 10)
	for _, bc := range []struct {
		name  string
		since uint64
	}{{"delta=10", snap.Upto}, {"snapshot", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := w.Backup(b.Context(), io.Discard, bc.since); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSmallImport measures a ten-account import into a corpus whose
// filter is sized for many keys (BREACHD_BENCH_FILTER_KEYS, 50M by
// default: about 110 MiB of filter): what every small breach added to a
// large corpus pays beside its rows, in time and in memory allocated.
func BenchmarkSmallImport(b *testing.B) {
	capacity := uint64(50_000_000)
	if s := os.Getenv("BREACHD_BENCH_FILTER_KEYS"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			b.Fatalf("BREACHD_BENCH_FILTER_KEYS: %v", err)
		}
		capacity = n
	}
	o := store.DefaultOptions()
	o.BackgroundShare, o.ExpectedKeys = 1, capacity
	s := open(b, b.TempDir(), o)
	defer s.Close()
	importAll(b, s, storetest.Breach("Base"), storetest.Digests("base", 10_000), 10_000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		name := "Small" + strconv.Itoa(i)
		importAll(b, s, storetest.Breach(name), storetest.Digests(name, 10), 10)
	}
}

// TestWriterIndexTiming measures how long a writer's lookup index is not
// current after an import (present lookups confirm in Badger meanwhile),
// and how long until its file is current again (the compaction waits for
// imports to pause, 5 s, first), for an import of ten
// accounts and one of 1% of the corpus. It runs only with
// BREACHD_DELTA_KEYS (the corpus size): bench/README.md records it.
func TestWriterIndexTiming(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("BREACHD_DELTA_KEYS"))
	if n == 0 {
		t.Skip("set BREACHD_DELTA_KEYS to a corpus size")
	}
	o := store.DefaultOptions()
	o.BackgroundShare = 1
	w := open(t, t.TempDir(), o)
	defer w.Close()
	importAll(t, w, storetest.Breach("Base"), storetest.Digests("base", n), 10_000)
	waitIndex(t, w)
	for i, size := range []int{10, max(n/100, 1000), n / 4} { // the last over the delta bound: spilled runs
		name := "Delta" + strconv.Itoa(i)
		ds := append(storetest.Digests("base", size/2), storetest.Digests(name, size-size/2)...)
		importAll(t, w, storetest.Breach(name), ds, 10_000)
		start := time.Now()
		stale := time.Duration(0)
		for !w.Stats().Index.Current {
			time.Sleep(time.Millisecond)
			stale = time.Since(start)
		}
		for w.Stats().Index.Delta != 0 {
			time.Sleep(time.Millisecond)
		}
		t.Logf("an import of %d accounts (half of them new) over %d: the index not current for %v after it returned; its file current after %v",
			size, n, stale, time.Since(start))
	}
}

// TestReplicaSnapshotHeap measures a replica's Go heap while it applies a
// first snapshot of BREACHD_DELTA_KEYS accounts, then a delta of a
// quarter as many (over the index's delta bound): peak heap in use, read
// every 20 ms, with GOGC at 20. bench/README.md records it. The
// snapshot's rows are not kept for the lookup index, which has no view to
// merge them into; the delta's are kept up to the bound and spilled past
// it.
func TestReplicaSnapshotHeap(t *testing.T) {
	n, w, r := replicaPair(t)
	ctx := t.Context()
	// A collection after each fifth of growth, so that heap in use follows
	// the live heap rather than the collector's pace.
	defer debug.SetGCPercent(debug.SetGCPercent(20))
	var upto uint64
	apply := func(what string) {
		backup, err := os.CreateTemp(t.TempDir(), "backup")
		if err != nil {
			t.Fatal(err)
		}
		defer backup.Close()
		info, err := w.Backup(ctx, backup, upto)
		if err != nil {
			t.Fatal(err)
		}
		upto = info.Upto
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		var peak atomic.Uint64
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				peak.Store(max(peak.Load(), m.HeapInuse))
			}
		}()
		backup.Seek(0, io.SeekStart)
		start := time.Now()
		_, err = r.ApplyBackup(ctx, backup, info.Keys)
		close(stop)
		<-sampled
		if err != nil {
			t.Fatal(err)
		}
		if !r.Stats().Index.Current {
			t.Fatalf("the index is not current after %s", what)
		}
		t.Logf("%s applied, its index current (built inline) in %v; Go heap in use: %d MiB before, %d MiB at its peak",
			what, time.Since(start), before.HeapInuse>>20, peak.Load()>>20)
	}
	importAll(t, w, storetest.Breach("Base"), storetest.Digests("base", n), 10_000)
	apply(fmt.Sprintf("a snapshot of %d accounts", n))
	importAll(t, w, storetest.Breach("More"), storetest.Digests("more", n/4), 10_000)
	apply(fmt.Sprintf("a delta of %d new accounts", n/4))
}
