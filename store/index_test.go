package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/internal/logtest"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// waitIndex waits until lookups read a current index; on failure it
// prints logs, if given.
func waitIndex(tb testing.TB, s *store.Store, logs ...*logtest.Buffer) store.IndexStats {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if ix := s.Stats().Index; ix.Current {
			return ix
		}
		if time.Now().After(deadline) {
			var l string
			for _, b := range logs {
				l += b.String()
			}
			tb.Fatalf("the lookup index is not current after 30s: %+v\n%s", s.Stats().Index, l)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitCompacted waits for the lookup index to be current without a delta.
func waitCompacted(tb testing.TB, s *store.Store, logs *logtest.Buffer) store.IndexStats {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if ix := s.Stats().Index; ix.Current && ix.Delta == 0 {
			return ix
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the lookup index is not compacted after 30s: %+v\n%s", s.Stats().Index, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIndex follows the lookup index through the life of a corpus: built
// in the background after an import, exact; the next import's rows merged
// into it at the commit, then compacted into a new file; kept current
// through a delete and a catalogue update (the deleted breach resolves to
// nothing); loaded, not rebuilt, at reopen; and rebuilt when its file is
// damaged or older than the corpus.
func TestIndex(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var logs logtest.Buffer
	o := options(0)
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s := open(t, dir, o)
	a, b := storetest.Digests("a", 20_000), storetest.Digests("b", 5_000)
	shared := a[:1000]
	importAll(t, s, storetest.Breach("Alpha"), a, 5000)
	ix := waitIndex(t, s, &logs)
	if ix.Digests != 20_000 || ix.Version != 1 || ix.Sets != 1 {
		t.Fatalf("index after the first import = %+v, want 20000 digests in 1 set at version 1", ix)
	}
	wantBreaches(t, s, a, "Alpha")
	wantBreaches(t, s, storetest.Digests("outsider", 5000))

	importAll(t, s, storetest.Breach("Beta"), append(append([]breachd.Digest{}, shared...), b...), 5000)
	// The import's rows are merged into the index at its commit (a
	// delta), then the file is rewritten from the two; either way exact.
	if ix := s.Stats().Index; !ix.Current || (ix.Delta != 6000 && ix.Version != 2) {
		t.Fatalf("index at the second import's commit = %+v, want it current, with its 6000 rows merged", ix)
	}
	wantBreaches(t, s, shared, "Alpha", "Beta")
	ix = waitCompacted(t, s, &logs)
	if ix.Digests != 25_000 || ix.Version != 2 || ix.Sets != 3 {
		t.Fatalf("index after the second import = %+v, want 25000 digests in 3 sets at version 2", ix)
	}
	if strings.Contains(logs.String(), `"lookup index built" digests=25000`) {
		t.Errorf("the second import's index was rebuilt from Badger, not compacted:\n%s", logs.String())
	}
	wantBreaches(t, s, shared, "Alpha", "Beta")
	wantBreaches(t, s, b, "Beta")
	wantBreaches(t, s, a[1000:], "Alpha")

	// A delete keeps the index current: Alpha resolves to nothing.
	if _, _, err := s.DeleteBreach(context.Background(), "Alpha"); err != nil {
		t.Fatal(err)
	}
	if ix := s.Stats().Index; !ix.Current || ix.Version != 2 {
		t.Fatalf("index after a delete = %+v, want the version-2 index, current", ix)
	}
	wantBreaches(t, s, shared, "Beta")
	wantBreaches(t, s, a[1000:])
	u := storetest.Breach("Beta")
	u.Title = "Beta, corrected"
	if _, _, err := s.UpdateBreach(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	got, _, _ := s.Lookup(context.Background(), b[0])
	if len(got) != 1 || got[0].Title != u.Title || !s.Stats().Index.Current {
		t.Fatalf("after an update: %v, index %+v; want the corrected title from a current index", got, s.Stats().Index)
	}

	// Reopen: the saved index (version 2; the corpus is at 4, but only
	// through a delete and an update) is current: loaded, not rebuilt.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	s = open(t, dir, o)
	if ix := s.Stats().Index; !ix.Current || ix.Version != 2 {
		t.Fatalf("reopen: the saved, current index was not loaded: %+v\n%s", ix, logs.String())
	}
	if strings.Contains(logs.String(), "lookup index built") {
		t.Errorf("reopen rebuilt a current index:\n%s", logs.String())
	}
	wantBreaches(t, s, shared, "Beta")
	wantBreaches(t, s, a[1000:])
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A damaged file is reported and rebuilt; answers stay exact.
	p := filepath.Join(dir, "breachd.index")
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, raw[:len(raw)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	s = open(t, dir, o)
	defer s.Close()
	wantBreaches(t, s, shared, "Beta")
	waitIndex(t, s, &logs) // beside the collection of what the damage left
	if !strings.Contains(logs.String(), "lookup index unreadable") {
		t.Errorf("a truncated index was not reported:\n%s", logs.String())
	}
	wantBreaches(t, s, shared, "Beta")
	wantBreaches(t, s, b, "Beta")
	wantBreaches(t, s, a[1000:])
}

// TestIndexLookupAllocs pins the present path's allocations: none, with a
// current index.
func TestIndexLookupAllocs(t *testing.T) { // not parallel: AllocsPerRun counts the whole process's
	s := open(t, t.TempDir(), options(0))
	defer s.Close()
	ds := storetest.Digests("a", 5000)
	importAll(t, s, storetest.Breach("Alpha"), ds, 5000)
	waitIndex(t, s)
	ctx := context.Background()
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		got, _, err := s.Lookup(ctx, ds[i%len(ds)])
		if err != nil || len(got) != 1 {
			t.Fatalf("Lookup = %v, %v", got, err)
		}
		i++
	})
	if allocs > 0 {
		t.Fatalf("a present lookup allocates %.1f times, want 0", allocs)
	}
}

// TestIndexManual is the offline tools' mode: a first import's bulk load
// writes the index in the same pass (current at once, no rebuild); a later
// import's rows are merged into it, and BuildIndex writes the file from the
// two (no Badger read), which a daemon then loads.
func TestIndexManual(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var logs logtest.Buffer
	o := options(0)
	o.Logger, o.Index = slog.New(slog.NewTextHandler(&logs, nil)), store.IndexManual
	s := open(t, dir, o)
	a, b := storetest.Digests("a", 10_000), storetest.Digests("b", 3_000)
	importAll(t, s, storetest.Breach("Alpha"), a, 5000)
	if ix := s.Stats().Index; !ix.Current || ix.Digests != 10_000 {
		t.Fatalf("after a bulk load: index %+v, want current with 10000 digests", ix)
	}
	if strings.Contains(logs.String(), "lookup index built") {
		t.Errorf("the bulk load's index was rebuilt from Badger:\n%s", logs.String())
	}
	importAll(t, s, storetest.Breach("Beta"), append(append([]breachd.Digest{}, a[:10]...), b...), 5000)
	if ix := s.Stats().Index; !ix.Current || ix.Delta != 3010 {
		t.Fatalf("after a later import in manual mode: index %+v, want current with its 3010 rows merged", ix)
	}
	wantBreaches(t, s, a[:10], "Alpha", "Beta")
	if err := s.BuildIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ix := s.Stats().Index; !ix.Current || ix.Digests != 13_000 || ix.Delta != 0 {
		t.Fatalf("after BuildIndex: index %+v, want current with 13000 digests", ix)
	}
	if strings.Contains(logs.String(), "lookup index built") || !strings.Contains(logs.String(), "lookup index compacted") {
		t.Errorf("BuildIndex read Badger instead of compacting:\n%s", logs.String())
	}
	wantBreaches(t, s, a[:10], "Alpha", "Beta")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	o.Index = store.IndexBackground
	s = open(t, dir, o)
	defer s.Close()
	if ix := s.Stats().Index; !ix.Current || ix.Version != 2 {
		t.Fatalf("a daemon's open after BuildIndex: index %+v, want current at version 2", ix)
	}
	wantBreaches(t, s, b, "Beta")
}

// TestKeyedLookupAllocs: on a keyed corpus too, lookups allocate nothing,
// absent or present (keying a digest through hash.Hash made two).
func TestKeyedLookupAllocs(t *testing.T) { // not parallel: AllocsPerRun counts the whole process's
	s, err := openKeyed(t, t.TempDir(), newIndexKey(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ds := storetest.Digests("a", 5000)
	absent := storetest.Digests("b", 5000)
	importAll(t, s, storetest.Breach("Alpha"), ds, 5000)
	waitIndex(t, s)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		ds   []breachd.Digest
		want int
	}{{"present", ds, 1}, {"absent", absent, 0}} {
		i := 0
		allocs := testing.AllocsPerRun(1000, func() {
			got, _, err := s.Lookup(ctx, tc.ds[i%len(tc.ds)])
			if err != nil || len(got) != tc.want {
				t.Fatalf("%s Lookup = %v, %v", tc.name, got, err)
			}
			i++
		})
		if allocs > 0 {
			t.Errorf("a keyed %s lookup allocates %.1f times, want 0", tc.name, allocs)
		}
	}
}

// TestIndexSettle: a writer's merged imports wait for changes to pause
// before their delta is compacted (here never: an hour), answering from
// the index and its delta meanwhile; a restart in that window rebuilds the
// index from Badger, exact.
func TestIndexSettle(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var logs logtest.Buffer
	o := store.WithIndexSettle(options(0), time.Hour)
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s := open(t, dir, o)
	a := storetest.Digests("a", 5000)
	importAll(t, s, storetest.Breach("Alpha"), a, 5000)
	waitIndex(t, s)
	var sizes int
	for i, n := range []int{10, 300, 20} {
		name := fmt.Sprintf("Small%d", i)
		importAll(t, s, storetest.Breach(name), append(storetest.Digests(name, n), a[i]), 1000)
		sizes += n + 1
		if ix := s.Stats().Index; !ix.Current || ix.Delta != sizes {
			t.Fatalf("after %s: index %+v, want current with a delta of %d rows", name, ix, sizes)
		}
		wantBreaches(t, s, storetest.Digests(name, n), name)
	}
	wantBreaches(t, s, a[:1], "Alpha", "Small0")
	if strings.Contains(logs.String(), "lookup index compacted") {
		t.Fatalf("compacted before changes paused:\n%s", logs.String())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, options(0))
	defer s.Close()
	waitIndex(t, s)
	wantBreaches(t, s, a[:1], "Alpha", "Small0")
	wantBreaches(t, s, a[1:2], "Alpha", "Small1")
	wantBreaches(t, s, storetest.Digests("Small2", 20), "Small2")
}

// TestDeltaAndLogGauges: the gauges of what a small import leaves beside
// the files it would have rewritten before: the rows merged into the
// lookup index (until its compaction, held off here), and the filter's
// log; a whole save (a first import) leaves neither.
func TestDeltaAndLogGauges(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	o := store.WithIndexSettle(options(100_000), time.Hour)
	o.Registerer = reg
	s := open(t, t.TempDir(), o)
	defer s.Close()
	gauge := func(name string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatalf("no gauge %s", name)
		return 0
	}
	importAll(t, s, storetest.Breach("Alpha"), storetest.Digests("a", 5000), 5000)
	waitIndex(t, s)
	if d, l := gauge("breachd_index_delta_rows"), gauge("breachd_bloom_filter_log_bytes"); d != 0 || l != 0 {
		t.Fatalf("after a first import: delta %v rows, log %v bytes; want both 0", d, l)
	}
	importAll(t, s, storetest.Breach("Beta"), storetest.Digests("b", 30), 30)
	if d := gauge("breachd_index_delta_rows"); d != 30 {
		t.Errorf("after 30 accounts imported: delta %v rows, want 30", d)
	}
	// About one block a new key: a record of 24 + 72 bytes a block + 4,
	// after the log's 24-byte header.
	if l := gauge("breachd_bloom_filter_log_bytes"); l < 24+24+72*25+4 || l > 24+24+72*30+4 {
		t.Errorf("after 30 accounts imported: log %v bytes, want a record of 25 to 30 blocks", l)
	}
}

// TestIndexMergedOverDelta: an import over the delta bound, whose rows
// are spilled in runs, has its rows merged with the index file (no Badger
// read): a key's newest row wins (the import's over the view's delta, the
// delta's over the file), and every answer is exact. Past the
// runs' bound, and when another import commits before the merge, the
// index is rebuilt from Badger instead, still exact.
func TestIndexMergedOverDelta(t *testing.T) {
	t.Parallel()
	for name, mode := range map[string]store.IndexMode{"inline": store.IndexInline, "background": store.IndexBackground} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var logs logtest.Buffer
			o := store.WithMaxDelta(options(0), 100)
			o.Logger, o.Index = slog.New(slog.NewTextHandler(&logs, nil)), mode
			s := open(t, t.TempDir(), o)
			defer s.Close()
			a, b, c := storetest.Digests("a", 3000), storetest.Digests("b", 800), storetest.Digests("c", 50)
			importAll(t, s, storetest.Breach("Alpha"), a, 1000)
			waitIndex(t, s, &logs)
			// A small import first: a delta in the view, under its bound.
			importAll(t, s, storetest.Breach("Gamma"), append(append([]breachd.Digest{}, a[:20]...), c...), 100)
			if ix := s.Stats().Index; mode == store.IndexInline && ix.Delta != 70 {
				t.Fatalf("after a small import the index = %+v, want its 70 rows as a delta", ix)
			}
			// Beta: 800 new rows and 300 of Alpha's (20 of them Gamma's
			// too), in batches of 100, some sent twice in batches far
			// apart (duplicates: no row changes twice): 10 runs.
			var rows []breachd.Digest
			rows = append(rows, a[:300]...)
			rows = append(rows, b...)
			rows = append(rows, a[:50]...)
			rows = append(rows, b[:50]...)
			logs.Reset()
			importAll(t, s, storetest.Breach("Beta"), rows, 100)
			ix := waitIndex(t, s, &logs)
			if ix.Digests != 3850 || ix.Delta != 0 {
				t.Fatalf("index after Beta = %+v, want 3850 digests, no delta", ix)
			}
			if !strings.Contains(logs.String(), `"lookup index merged"`) || strings.Contains(logs.String(), `"lookup index built"`) {
				t.Fatalf("Beta's rows were not merged with the index file:\n%s", logs.String())
			}
			wantBreaches(t, s, a[:20], "Alpha", "Beta", "Gamma")
			wantBreaches(t, s, a[20:300], "Alpha", "Beta")
			wantBreaches(t, s, a[300:], "Alpha")
			wantBreaches(t, s, b, "Beta")
			wantBreaches(t, s, c, "Gamma")
			wantBreaches(t, s, storetest.Digests("outsider", 1000))

			// Past the runs' bound (17 runs of 100): rebuilt from Badger.
			d := storetest.Digests("d", 1800)
			logs.Reset()
			importAll(t, s, storetest.Breach("Delta"), d, 100)
			if ix := waitIndex(t, s, &logs); ix.Digests != 5650 {
				t.Fatalf("index after Delta = %+v, want 5650 digests", ix)
			}
			if !strings.Contains(logs.String(), `"lookup index built"`) {
				t.Fatalf("an import past the runs' bound was not rebuilt from Badger:\n%s", logs.String())
			}
			wantBreaches(t, s, d, "Delta")
			wantBreaches(t, s, b, "Beta")
		})
	}
}
