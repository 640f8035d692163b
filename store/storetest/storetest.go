package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/service"
)

// Backend is a corpus backend under test.
type Backend interface {
	service.Store
	Close() error
}

// Opener opens (creating if needed) the backend kept in dir. Run calls it
// again on the same dir, after Close, to check what survives.
type Opener func(tb testing.TB, dir string) Backend

// Run checks every invariant, each in a subtest with a fresh directory.
// With concurrent, the subtests run in parallel with each other (and with
// the caller's other parallel tests), as SpiceDB's datastore suite does;
// a backend whose instances share anything (a process-wide hook, a port)
// runs them one at a time instead.
func Run(t *testing.T, open Opener, concurrent bool) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, open Opener)
	}{
		{"ExactAnswers", exactAnswers},
		{"VisibleAllAtOnce", visibleAllAtOnce},
		{"InterruptedImportChangesNothing", interruptedImport},
		{"ReopenKeepsEverything", reopen},
		{"DeleteIsAtomicAndKept", deleteBreach},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if concurrent {
				t.Parallel()
			}
			tc.fn(t, open)
		})
	}
}

// Digests returns n distinct deterministic digests for a named set.
func Digests(set string, n int) []breachd.Digest {
	out := make([]breachd.Digest, n)
	for i := range out {
		out[i] = sha256.Sum256(binary.BigEndian.AppendUint64([]byte(set), uint64(i)))
	}
	return out
}

// Breach returns a valid breach record named name.
func Breach(name string) breachd.Breach {
	return breachd.Breach{Name: name, Title: name + " breach", BreachDate: "2011-06-17", DataClasses: []string{"Email addresses"}}
}

// Batches yields ds in batches of n, then end (nil: the import commits).
func Batches(ds []breachd.Digest, n int, end error) iter.Seq2[[]breachd.Digest, error] {
	return func(yield func([]breachd.Digest, error) bool) {
		for c := range slices.Chunk(ds, n) {
			if !yield(c, nil) {
				return
			}
		}
		if end != nil {
			yield(nil, end)
		}
	}
}

func importAll(tb testing.TB, b Backend, name string, ds []breachd.Digest) breachd.ImportStats {
	tb.Helper()
	st, err := b.Import(context.Background(), Breach(name), Batches(ds, 997, nil))
	if err != nil {
		tb.Fatalf("Import(%s) = %v", name, err)
	}
	return st
}

func names(bs []*breachd.CatalogEntry) []string {
	out := []string{}
	for _, b := range bs {
		out = append(out, b.Name)
	}
	return out
}

// want checks, one by one and as a batch, that every digest of ds is in
// exactly the breaches named.
func want(tb testing.TB, b Backend, ds []breachd.Digest, breaches ...string) {
	tb.Helper()
	if breaches == nil {
		breaches = []string{}
	}
	for _, d := range ds {
		got, _, err := b.Lookup(context.Background(), d)
		if err != nil {
			tb.Fatalf("Lookup(%x) = %v", d, err)
		}
		if !slices.Equal(names(got), breaches) {
			tb.Fatalf("Lookup(%x) = %v, want %v", d, names(got), breaches)
		}
	}
	for c := range slices.Chunk(ds, breachd.MaxBatch) {
		packed := make([]byte, 0, len(c)*breachd.DigestSize)
		for _, d := range c {
			packed = append(packed, d[:]...)
		}
		hits := 0
		_, err := b.LookupBatch(context.Background(), packed, func(i int, got []*breachd.CatalogEntry) {
			hits++
			if !slices.Equal(names(got), breaches) {
				tb.Errorf("LookupBatch: %x in %v, want %v", c[i], names(got), breaches)
			}
		})
		if err != nil {
			tb.Fatalf("LookupBatch = %v", err)
		}
		if exposed := len(breaches) > 0; (hits == len(c)) != exposed || (!exposed && hits != 0) {
			tb.Fatalf("LookupBatch: %d of %d digests exposed, want all in %v", hits, len(c), breaches)
		}
	}
}

func version(tb testing.TB, b Backend) uint64 {
	tb.Helper()
	_, v, err := b.Breaches(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func exactAnswers(t *testing.T, open Opener) {
	b := open(t, t.TempDir())
	defer b.Close()
	a, bb, both, absent := Digests("a", 3000), Digests("b", 2000), Digests("both", 500), Digests("absent", 5000)
	want(t, b, a[:10]) // an empty corpus answers no

	st := importAll(t, b, "Alpha", append(slices.Clone(a), both...))
	if st.NewAccounts != 3500 || st.Version != 1 {
		t.Fatalf("first import = %+v, want 3500 new accounts at version 1", st)
	}
	st = importAll(t, b, "Beta", append(slices.Clone(bb), both...))
	if st.NewAccounts != 2000 || st.KnownAccounts != 500 || st.Version != 2 {
		t.Fatalf("second import = %+v, want 2000 new and 500 known at version 2", st)
	}
	want(t, b, a, "Alpha")
	want(t, b, bb, "Beta")
	want(t, b, both, "Alpha", "Beta")
	want(t, b, absent)

	list, v, err := b.Breaches(context.Background())
	if err != nil || v != 2 || !slices.Equal(names(list), []string{"Alpha", "Beta"}) {
		t.Fatalf("Breaches = %v, %d, %v", names(list), v, err)
	}
	if list[0].AccountCount != 3500 || list[1].AccountCount != 2500 {
		t.Fatalf("account counts = %d, %d, want 3500, 2500", list[0].AccountCount, list[1].AccountCount)
	}
	if _, _, err := b.Breach(context.Background(), "Gamma"); !errors.Is(err, breachd.ErrNotFound) {
		t.Fatalf("Breach(Gamma) = %v, want ErrNotFound", err)
	}
	// Importing the same breach again is idempotent.
	if st := importAll(t, b, "Alpha", a); st.Duplicates != 3000 || st.NewAccounts != 0 || st.Version != 3 {
		t.Fatalf("re-import = %+v, want only duplicates at version 3", st)
	}
	want(t, b, a, "Alpha")
}

// visibleAllAtOnce imports a breach that shares accounts with a committed
// one while lookups run, and checks every answer against the version it
// reports: the new breach's accounts are exposed exactly when the version
// includes it, the shared ones never lose the committed breach, and no
// goroutine ever sees the version go back.
func visibleAllAtOnce(t *testing.T, open Opener) {
	b := open(t, t.TempDir())
	defer b.Close()
	a, fresh := Digests("a", 3000), Digests("fresh", 8000)
	importAll(t, b, "Alpha", a)
	shared := a[:1000]

	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last uint64
			for i := w; !stop.Load(); i++ {
				got, v, err := b.Lookup(context.Background(), shared[i%len(shared)])
				switch {
				case err != nil:
					errs <- err
					return
				case v < last:
					errs <- fmt.Errorf("corpus version went from %d back to %d", last, v)
					return
				case !slices.Contains(names(got), "Alpha"):
					errs <- fmt.Errorf("a shared account lost Alpha during the import (version %d): false negative", v)
					return
				case slices.Contains(names(got), "Beta") != (v >= 2):
					errs <- fmt.Errorf("a shared account names Beta=%v at version %d", slices.Contains(names(got), "Beta"), v)
					return
				}
				last = v
				got, v, err = b.Lookup(context.Background(), fresh[(i*7919)%len(fresh)])
				switch {
				case err != nil:
					errs <- err
					return
				case (len(got) > 0) != (v >= 2):
					errs <- fmt.Errorf("a Beta account exposed=%v at version %d", len(got) > 0, v)
					return
				}
				// Let the import run: spinning readers on a small machine
				// (and under the race detector) otherwise starve it.
				runtime.Gosched()
			}
		}()
	}
	importAll(t, b, "Beta", append(slices.Clone(fresh), shared...))
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want(t, b, fresh, "Beta")
	want(t, b, shared, "Alpha", "Beta")
	want(t, b, a[1000:], "Alpha")
}

func interruptedImport(t *testing.T, open Opener) {
	b := open(t, t.TempDir())
	defer b.Close()
	a, fresh := Digests("a", 2000), Digests("fresh", 5000)
	importAll(t, b, "Alpha", a)
	errSource := errors.New("source failed")
	for _, tc := range []struct {
		name string
		run  func() error
	}{
		{"source error", func() error {
			_, err := b.Import(context.Background(), Breach("Beta"), Batches(append(slices.Clone(fresh), a[:100]...), 1000, errSource))
			return err
		}},
		{"context cancelled", func() error {
			ctx, cancel := context.WithCancel(context.Background())
			_, err := b.Import(ctx, Breach("Beta"), func(yield func([]breachd.Digest, error) bool) {
				if yield(fresh[:1000], nil) {
					cancel()
					yield(fresh[1000:], nil)
				}
			})
			return err
		}},
	} {
		if err := tc.run(); err == nil {
			t.Fatalf("%s: Import = nil, want an error", tc.name)
		}
		if v := version(t, b); v != 1 {
			t.Fatalf("%s: corpus version = %d after an interrupted import, want 1", tc.name, v)
		}
		want(t, b, fresh)
		want(t, b, a[:100], "Alpha")
		if _, _, err := b.Breach(context.Background(), "Beta"); !errors.Is(err, breachd.ErrNotFound) {
			t.Fatalf("%s: the interrupted breach is in the catalogue: %v", tc.name, err)
		}
	}
	// Importing it again completes it, counting every account as new.
	if st := importAll(t, b, "Beta", fresh); st.NewAccounts != 5000 || st.Version != 2 {
		t.Fatalf("import after interruptions = %+v, want 5000 new accounts at version 2", st)
	}
	want(t, b, fresh, "Beta")
}

func reopen(t *testing.T, open Opener) {
	dir := t.TempDir()
	b := open(t, dir)
	a, bb := Digests("a", 4000), Digests("b", 4000)
	importAll(t, b, "Alpha", a)
	importAll(t, b, "Beta", append(slices.Clone(bb), a[:10]...))
	if _, err := b.Import(context.Background(), Breach("Gamma"), Batches(Digests("g", 100), 50, errors.New("stop"))); err == nil {
		t.Fatal("interrupted Import = nil")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = open(t, dir)
	defer b.Close()
	if v := version(t, b); v != 2 {
		t.Fatalf("version after reopen = %d, want 2", v)
	}
	want(t, b, a[10:], "Alpha")
	want(t, b, a[:10], "Alpha", "Beta")
	want(t, b, bb, "Beta")
	want(t, b, Digests("g", 100))
	want(t, b, Digests("absent", 5000))
	list, _, err := b.Breaches(context.Background())
	if err != nil || len(list) != 2 || list[0].AccountCount != 4000 || list[1].AccountCount != 4010 {
		t.Fatalf("Breaches after reopen = %v, %v", list, err)
	}
	// And it goes on working: versions keep growing from where they were.
	if st := importAll(t, b, "Gamma", Digests("g", 100)); st.Version != 3 || st.NewAccounts != 100 {
		t.Fatalf("import after reopen = %+v, want 100 new accounts at version 3", st)
	}
}

// deleteBreach deletes a breach while lookups run: its own accounts are
// exposed exactly while the version is before the delete, shared ones keep
// the other breach throughout, and the deletion survives a reopen.
func deleteBreach(t *testing.T, open Opener) {
	dir := t.TempDir()
	b := open(t, dir)
	a, own := Digests("a", 2000), Digests("own", 5000)
	importAll(t, b, "Alpha", a)
	importAll(t, b, "Beta", append(slices.Clone(own), a[:500]...))
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; !stop.Load(); i++ {
				got, v, err := b.Lookup(context.Background(), own[(i*7919)%len(own)])
				if err == nil && (len(got) > 0) != (v < 3) {
					err = fmt.Errorf("a Beta-only account exposed=%v at version %d", len(got) > 0, v)
				}
				if err == nil {
					got, _, err = b.Lookup(context.Background(), a[i%500])
					if err == nil && !slices.Contains(names(got), "Alpha") {
						err = errors.New("a shared account lost Alpha during the delete")
					}
				}
				if err != nil {
					errs <- err
					return
				}
				runtime.Gosched() // let the delete run
			}
		}()
	}
	removed, v, err := b.DeleteBreach(context.Background(), "Beta")
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err != nil || removed != 5000 || v != 3 {
		t.Fatalf("DeleteBreach(Beta) = %d, %d, %v; want 5000 removed at version 3", removed, v, err)
	}
	if _, _, err := b.DeleteBreach(context.Background(), "Beta"); !errors.Is(err, breachd.ErrNotFound) {
		t.Fatalf("deleting twice = %v, want ErrNotFound", err)
	}
	want(t, b, own)
	want(t, b, a, "Alpha")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = open(t, dir)
	defer b.Close()
	want(t, b, own)
	want(t, b, a, "Alpha")
	if v := version(t, b); v != 3 {
		t.Fatalf("version after reopen = %d, want 3", v)
	}
}
