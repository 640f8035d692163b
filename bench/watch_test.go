package bench

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"iter"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/store"
)

// digestRange yields the digests of set for i in [from, to), in batches.
func digestRange(set string, from, to int) iter.Seq2[[]breachd.Digest, error] {
	return func(yield func([]breachd.Digest, error) bool) {
		batch := make([]breachd.Digest, 0, breachd.MaxBatch)
		for i := from; i < to; i++ {
			batch = append(batch, sha256.Sum256(binary.BigEndian.AppendUint64([]byte(set), uint64(i))))
			if len(batch) == cap(batch) || i == to-1 {
				if !yield(batch, nil) {
					return
				}
				batch = batch[:0]
			}
		}
	}
}

// rssKB reads this process's resident set size.
func rssKB() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return n
		}
	}
	return 0
}

// BenchmarkWatchDiff measures the exposure diff of issue 23: a watchlist
// of BREACHD_BENCH_WATCHED accounts (default 1M; the figure is
// 10M) against a new breach of corpusKeys rows holding 1,000 of them.
// Each iteration imports the breach again under a new name and
// reconciles; it reports the reconciliation's seconds and the RSS it
// added over the process's before it (sampled every 10 ms).
func BenchmarkWatchDiff(b *testing.B) {
	watched := 1_000_000
	if s := os.Getenv("BREACHD_BENCH_WATCHED"); s != "" {
		var err error
		if watched, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	rows := corpusKeys(b)
	ctx := context.Background()
	dir := b.TempDir()
	o := store.DefaultOptions()
	o.ExpectedKeys = uint64(rows * 2)
	emails, err := store.Open(ctx, store.EmailDir(dir), o)
	if err != nil {
		b.Fatal(err)
	}
	defer emails.Close()
	wo := store.DefaultOptions()
	wo.ExpectedKeys = uint64(watched)
	w, err := store.OpenWatchlists(ctx, store.WatchDir(dir), emails, wo)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Create(ctx, "users"); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if _, err := w.Add(ctx, "users", digestRange("user", 0, watched)); err != nil {
		b.Fatal(err)
	}
	b.Logf("watchlist of %d accounts added in %s", watched, time.Since(start).Round(time.Millisecond))
	b.ReportAllocs()
	b.ResetTimer()
	var reconcile time.Duration
	var peak int64
	for i := range b.N {
		b.StopTimer()
		name := "Sega" + strconv.Itoa(i)
		breach := func(yield func([]breachd.Digest, error) bool) {
			for ds, err := range digestRange(name, 0, rows-1000) {
				if !yield(ds, err) {
					return
				}
			}
			for ds, err := range digestRange("user", 0, 1000) { // watched
				if !yield(ds, err) {
					return
				}
			}
		}
		if _, err := emails.Import(ctx, breachd.Breach{Name: name, Title: name}, breach); err != nil {
			b.Fatal(err)
		}
		base := rssKB()
		var top atomic.Int64
		done := make(chan struct{})
		go func() {
			t := time.NewTicker(10 * time.Millisecond)
			defer t.Stop()
			for {
				if r := rssKB(); r > top.Load() {
					top.Store(r)
				}
				select {
				case <-done:
					return
				case <-t.C:
				}
			}
		}()
		b.StartTimer()
		t0 := time.Now()
		st, err := w.Reconcile(ctx)
		reconcile += time.Since(t0)
		b.StopTimer()
		close(done)
		if err != nil || st.Added != 1000 {
			b.Fatalf("Reconcile = %+v, %v", st, err)
		}
		peak = max(peak, top.Load()-base)
		b.StartTimer()
	}
	b.ReportMetric(reconcile.Seconds()/float64(b.N), "s/diff")
	b.ReportMetric(float64(peak)/1024, "MB-rss-added")
}
