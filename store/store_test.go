package store_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/internal/logtest"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// options returns the default options sized for tests, with the filter
// sized for n keys before the first import (0 keeps the default): 4 MiB
// memtables (Badger allocates each whole, 64 MiB by default), and scans not
// paced (a test that checks pacing sets BackgroundShare itself).
func options(n uint64) store.Options {
	o := store.DefaultOptions()
	o.MemTableSize = 4 << 20
	o.BackgroundShare = 1
	o = store.WithIndexSettle(o, 20*time.Millisecond)
	if n > 0 {
		o.ExpectedKeys = n
	}
	return o
}

func withLogger(l *slog.Logger) store.Options {
	o := options(0)
	o.Logger = l
	return o
}

func open(tb testing.TB, dir string, opts store.Options) *store.Store {
	tb.Helper()
	s, err := store.Open(context.Background(), dir, opts)
	if err != nil {
		tb.Fatalf("Open(%s) = %v", dir, err)
	}
	return s
}

func importAll(tb testing.TB, s *store.Store, b breachd.Breach, ds []breachd.Digest, batch int) breachd.ImportStats {
	tb.Helper()
	st, err := s.Import(context.Background(), b, storetest.Batches(ds, batch, nil))
	if err != nil {
		tb.Fatalf("Import(%s) = %v", b.Name, err)
	}
	return st
}

func names(bs []*breachd.CatalogEntry) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Name)
	}
	return out
}

// wantBreaches checks that every digest in ds is found in exactly want.
func wantBreaches(tb testing.TB, s *store.Store, ds []breachd.Digest, want ...string) {
	tb.Helper()
	for _, d := range ds {
		got, _, err := s.Lookup(context.Background(), d)
		if err != nil {
			tb.Fatalf("Lookup(%x) = %v", d, err)
		}
		if !slices.Equal(names(got), want) {
			tb.Fatalf("Lookup(%x) = %v, want %v", d, names(got), want)
		}
	}
}

func TestUncommittedImportIsInvisible(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	s := open(t, dir, options(0))
	a, b := storetest.Digests("a", 1000), storetest.Digests("b", 1000)
	importAll(t, s, storetest.Breach("Alpha"), a, 1000)

	// The batches are stored, then the source fails: lookups meanwhile and
	// afterwards see none of them.
	errDump := errors.New("dump truncated")
	pending := func(yield func([]breachd.Digest, error) bool) {
		if !yield(append(slices.Clone(b), a[:10]...), nil) {
			return
		}
		wantBreaches(t, s, b)
		wantBreaches(t, s, a[:10], "Alpha")
		if _, _, err := s.Breach(ctx, "Beta"); !errors.Is(err, breachd.ErrUnknownBreach) {
			t.Errorf("pending breach is in the catalogue: %v", err)
		}
		yield(nil, errDump)
	}
	if _, err := s.Import(ctx, storetest.Breach("Beta"), pending); !errors.Is(err, errDump) {
		t.Fatalf("Import with a failing source = %v, want %v", err, errDump)
	}
	wantBreaches(t, s, b)
	if v := s.Version(); v != 1 {
		t.Fatalf("version after an abandoned import = %d, want 1", v)
	}

	// After a restart the abandoned rows are still invisible, and importing
	// the breach again completes it.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, options(0))
	defer s.Close()
	wantBreaches(t, s, b)
	if got := s.Stats().Keys; got != 1000 {
		t.Fatalf("Stats().Keys = %d, want 1000: abandoned rows are not counted", got)
	}
	st := importAll(t, s, storetest.Breach("Beta"), b, 400)
	if st.Version != 2 || st.NewAccounts != 1000 {
		t.Fatalf("re-import stats = %+v, want version 2 and 1000 new accounts", st)
	}
	wantBreaches(t, s, b, "Beta")
	wantBreaches(t, s, a[:10], "Alpha")
	if got := s.Stats().Keys; got != 2000 {
		t.Fatalf("Stats().Keys = %d, want 2000", got)
	}
}

func TestReopen(t *testing.T) {
	t.Parallel()
	a, b := storetest.Digests("a", 2000), storetest.Digests("b", 2000)
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string, older []byte)
		want   string // what the store must log at reopen
	}{
		{"clean", func(*testing.T, string, []byte) {}, "bloom filter loaded"},
		{"filter deleted", func(t *testing.T, dir string, _ []byte) {
			if err := os.Remove(filepath.Join(dir, "breachd.bloom")); err != nil {
				t.Fatal(err)
			}
		}, "rebuilding bloom filter"},
		{"filter corrupt", func(t *testing.T, dir string, _ []byte) {
			p := filepath.Join(dir, "breachd.bloom")
			buf, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			buf[len(buf)/2] ^= 0xff
			if err := os.WriteFile(p, buf, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "rebuilding bloom filter"},
		{"filter of format 4", func(t *testing.T, dir string, _ []byte) {
			// Written before a key's locations were one a word (the last
			// release's filters): refused and rebuilt, never read with
			// today's mapping (which would miss its keys).
			p := filepath.Join(dir, "breachd.bloom")
			buf, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			binary.BigEndian.PutUint32(buf[8:], 4)
			if err := os.WriteFile(p, buf, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "format 4, want 5"},
		{"filter stale", func(t *testing.T, dir string, older []byte) {
			// As after a crash between a write and the filter's save.
			if err := os.WriteFile(filepath.Join(dir, "breachd.bloom"), older, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dir, "breachd.bloom.log")); err != nil {
				t.Fatal(err)
			}
		}, "rebuilding bloom filter"},
		{"filter as Alpha saved it, with its log", func(t *testing.T, dir string, older []byte) {
			// Beta's keys were logged, not saved whole: the same file.
			if err := os.WriteFile(filepath.Join(dir, "breachd.bloom"), older, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "bloom filter loaded"},
		{"log with a torn record after Beta's", func(t *testing.T, dir string, _ []byte) {
			// A change killed inside its record, before its commit.
			damageLog(t, dir, func(b []byte) []byte { return append(b, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0) })
		}, "bloom filter loaded"},
		{"log torn in Beta's record", func(t *testing.T, dir string, _ []byte) {
			damageLog(t, dir, func(b []byte) []byte { return b[:len(b)/2] })
		}, "rebuilding bloom filter"},
		{"log damaged", func(t *testing.T, dir string, _ []byte) {
			damageLog(t, dir, func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b })
		}, "rebuilding bloom filter"},
		{"log of another save", func(t *testing.T, dir string, _ []byte) {
			damageLog(t, dir, func(b []byte) []byte {
				b[19] ^= 1 // the save's checksum
				binary.BigEndian.PutUint32(b[20:], crc32.Checksum(b[:20], crc32.MakeTable(crc32.Castagnoli)))
				return b
			})
		}, "rebuilding bloom filter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, options(0))
			importAll(t, s, storetest.Breach("Alpha"), a, 500)
			older, err := os.ReadFile(filepath.Join(dir, "breachd.bloom"))
			if err != nil {
				t.Fatal(err)
			}
			importAll(t, s, storetest.Breach("Beta"), b, 500)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(filepath.Join(dir, "breachd.bloom.log")); err != nil || fi.Size() < 1000 {
				t.Fatalf("no filter log of Beta's keys: %v", err)
			}
			tt.damage(t, dir, older)

			var logs bytes.Buffer
			s = open(t, dir, withLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			defer s.Close()
			if !strings.Contains(logs.String(), tt.want) {
				t.Errorf("reopen logged %q, want %q", logs.String(), tt.want)
			}
			wantBreaches(t, s, a, "Alpha")
			wantBreaches(t, s, b, "Beta")
			wantBreaches(t, s, storetest.Digests("absent", 1000))
			if st := s.Stats(); st.Keys != 4000 || st.Version != 2 || st.Breaches != 2 {
				t.Fatalf("Stats() after reopen = %+v", st)
			}
		})
	}
}

// damageLog rewrites the filter log in dir with what f makes of it.
func damageLog(t *testing.T, dir string, f func([]byte) []byte) {
	t.Helper()
	p := filepath.Join(dir, "breachd.bloom.log")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, f(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestStrays: the keys an abandoned import added to the published filter
// count toward its false-positive rate and its growth, though no breach
// holds them; when they are many, its collection rebuilds the filter
// without them, and their lookups stop costing Badger reads.
func TestStrays(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		capacity uint64 // the filter's, before
		gone     int    // keys the abandoned import adds
	}{
		{"few: counted toward growth", 1024, 1200},
		{"many: dropped", 20_000, 6000},
		{"the import grew the filter: its first keys counted", 1024, 6000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t, t.TempDir(), options(tc.capacity))
			defer s.Close()
			importAll(t, s, storetest.Breach("Seed"), storetest.Digests("seed", 10), 10)
			before := s.Stats().Filter
			gone := storetest.Digests("gone", tc.gone)
			if _, err := s.Import(context.Background(), storetest.Breach("Gone"), storetest.Batches(gone, 400, errors.New("the source failed"))); err == nil {
				t.Fatal("an import whose source failed committed")
			}
			// The next import waits for the abandoned one's collection.
			importAll(t, s, storetest.Breach("Next"), storetest.Digests("next", 400), 400)
			after := s.Stats().Filter
			if after.EstimatedFPR > after.TargetFPR {
				t.Fatalf("after the next import: %+v, want the filter at its target rate (it was %+v)", after, before)
			}
			wantBreaches(t, s, storetest.Digests("next", 400), "Next")
			wantBreaches(t, s, gone)
			if fp := s.Stats().Filter.FalsePositives - after.FalsePositives; fp > uint64(tc.gone)/20 {
				t.Fatalf("%d of the abandoned import's %d keys passed the filter", fp, tc.gone)
			}
		})
	}
}

func TestFilterGrows(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir, options(1024))
	ds := storetest.Digests("a", 20000)
	// The first import is a bulk load and sizes its filter itself: start
	// with a small one so that the second grows the filter as it goes.
	importAll(t, s, storetest.Breach("Seed"), storetest.Digests("seed", 10), 10)
	importAll(t, s, storetest.Breach("Alpha"), ds, 2500)
	wantBreaches(t, s, ds, "Alpha")
	fs := s.Stats().Filter
	if fs.Capacity < 20000 {
		t.Fatalf("filter capacity = %d after 20000 keys, want it grown", fs.Capacity)
	}
	if fs.EstimatedFPR > 2*fs.TargetFPR {
		t.Fatalf("estimated FPR %.5f is over twice the target %.5f", fs.EstimatedFPR, fs.TargetFPR)
	}
	s.Close()
	s = open(t, dir, options(1024))
	defer s.Close()
	wantBreaches(t, s, ds, "Alpha")
}

func TestLookupBatch(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), options(0))
	defer s.Close()
	present := storetest.Digests("a", 100)
	importAll(t, s, storetest.Breach("Alpha"), present, 100)
	absent := storetest.Digests("absent", 300)
	var packed []byte
	var want []int
	for i := 0; i < 400; i++ {
		if i%4 == 0 {
			packed = append(packed, present[i/4][:]...)
			want = append(want, i)
		} else {
			packed = append(packed, absent[i-i/4-1][:]...)
		}
	}
	var got []int
	v, err := s.LookupBatch(context.Background(), packed, func(i int, bs []*breachd.CatalogEntry) {
		if !slices.Equal(names(bs), []string{"Alpha"}) {
			t.Errorf("hit %d = %v", i, names(bs))
		}
		got = append(got, i)
	})
	if err != nil || v != 1 {
		t.Fatalf("LookupBatch = %d, %v", v, err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("LookupBatch hits = %v, want %v", got, want)
	}
	if _, err := s.LookupBatch(context.Background(), packed[:33], nil); !errors.Is(err, breachd.ErrInvalidDigest) {
		t.Fatalf("LookupBatch(33 bytes) = %v, want ErrInvalidDigest", err)
	}
}

func TestImportsAreSerialised(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), options(0))
	defer s.Close()
	started, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		_, err := s.Import(t.Context(), storetest.Breach("Alpha"), func(yield func([]breachd.Digest, error) bool) {
			close(started)
			<-release
			yield(storetest.Digests("a", 10), nil)
		})
		first <- err
	}()
	<-started
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Import(ctx, storetest.Breach("Beta"), storetest.Batches(storetest.Digests("b", 10), 10, nil)); !errors.Is(err, context.Canceled) {
		t.Fatalf("second Import = %v, want it to wait and fail with the context", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first Import = %v", err)
	}
	if st := importAll(t, s, storetest.Breach("Beta"), storetest.Digests("b", 10), 10); st.Version != 2 {
		t.Fatalf("Import after the first = %+v, want version 2", st)
	}
}

// TestLockHeldAnInstant: a corpus whose lock is still held for an instant
// after its Close (a forked child shares Badger's locked directory file
// until it execs; here a lock of the test's own, released after 50 ms)
// opens, and rekeys ('breachd rekey' run as the daemon stops).
func TestLockHeldAnInstant(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		use  func(t *testing.T, data string)
	}{
		{"open", func(t *testing.T, data string) {
			s := open(t, store.EmailDir(data), options(0))
			defer s.Close()
			wantBreaches(t, s, storetest.Digests("a", 10), "Alpha")
		}},
		{"rekey", func(t *testing.T, data string) {
			if st, err := store.Rekey(t.Context(), data, newIndexKey(t), options(0)); err != nil || st.Rows != 10 {
				t.Fatalf("Rekey = %+v, %v", st, err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data := t.TempDir()
			dir := store.EmailDir(data)
			s := open(t, dir, options(0))
			importAll(t, s, storetest.Breach("Alpha"), storetest.Digests("a", 10), 10)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(dir) // Badger flocks the directory (LOCK holds its pid)
			if err != nil {
				t.Fatal(err)
			}
			if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
				t.Fatal(err)
			}
			time.AfterFunc(50*time.Millisecond, func() { f.Close() })
			tc.use(t, data)
		})
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir, options(0))
	if _, err := s.Import(t.Context(), breachd.Breach{Name: "bad name"}, storetest.Batches(nil, 1, nil)); !errors.Is(err, breachd.ErrInvalidBreach) {
		t.Fatalf("Import(bad name) = %v, want ErrInvalidBreach", err)
	}
	if _, err := store.Open(t.Context(), dir, options(0)); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Lookup(t.Context(), breachd.Digest{}); !errors.Is(err, breachd.ErrClosed) || !errors.Is(err, breachd.ErrUnavailable) {
		t.Fatalf("Lookup after Close = %v, want ErrClosed", err)
	}
	if err := s.Close(); !errors.Is(err, breachd.ErrClosed) {
		t.Fatalf("second Close = %v, want ErrClosed", err)
	}
}

// TestFirstImport covers the bulk load of the first import: lookups during
// it never see its rows before the commit, an abandoned one leaves nothing
// behind, and duplicates within the dump are counted.
func TestFirstImport(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	s := open(t, dir, options(0))
	a, b := storetest.Digests("a", 5000), storetest.Digests("b", 30000)

	if _, err := s.Import(ctx, storetest.Breach("Abandoned"), storetest.Batches(a, 1000, context.Canceled)); !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned first Import = %v", err)
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				got, v, err := s.Lookup(ctx, b[(i*7919)%len(b)])
				if err != nil {
					errs <- err
					return
				}
				if exposed := len(got) > 0; exposed != (v >= 1) {
					errs <- errors.New("Beta digest visibility does not match corpus version")
					return
				}
			}
		}()
	}
	st := importAll(t, s, storetest.Breach("Beta"), append(slices.Clone(b), b[:100]...), 7000)
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st.Received != 30100 || st.Duplicates != 100 || st.NewAccounts != 30000 || st.Version != 1 {
		t.Fatalf("stats = %+v", st)
	}
	wantBreaches(t, s, b, "Beta")
	wantBreaches(t, s, a)
	if got := s.Stats().Keys; got != 30000 {
		t.Fatalf("Stats().Keys = %d, want 30000: the abandoned rows are gone", got)
	}
	// The next import is an ordinary one and links known accounts.
	st = importAll(t, s, storetest.Breach("Gamma"), append(slices.Clone(a), b[:10]...), 1000)
	if st.NewAccounts != 5000 || st.KnownAccounts != 10 {
		t.Fatalf("second import stats = %+v", st)
	}
	s.Close()
	s = open(t, dir, options(0))
	defer s.Close()
	wantBreaches(t, s, a, "Gamma")
	wantBreaches(t, s, b[:10], "Beta", "Gamma")
	wantBreaches(t, s, b[10:], "Beta")
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*store.Options)
		option string
	}{
		{"fpr too high", func(o *store.Options) { o.FalsePositiveRate = 5 }, "FalsePositiveRate"},
		{"fpr zero", func(o *store.Options) { o.FalsePositiveRate = 0 }, "FalsePositiveRate"},
		{"fpr NaN", func(o *store.Options) { o.FalsePositiveRate = math.NaN() }, "FalsePositiveRate"},
		{"no expected keys", func(o *store.Options) { o.ExpectedKeys = 0 }, "ExpectedKeys"},
		{"negative cache", func(o *store.Options) { o.BlockCacheSize = -1 }, "BlockCacheSize"},
		{"tiny block", func(o *store.Options) { o.BlockSize = 10 }, "BlockSize"},
	}
	if err := store.DefaultOptions().Validate(); err != nil {
		t.Fatalf("DefaultOptions().Validate() = %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := store.DefaultOptions()
			tt.change(&o)
			dir := filepath.Join(t.TempDir(), "data")
			_, err := store.Open(t.Context(), dir, o)
			var oe *breachd.OptionError
			if !errors.As(err, &oe) || oe.Option != tt.option {
				t.Fatalf("Open with %s = %v, want an OptionError naming %s", tt.name, err, tt.option)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("Open with invalid options created %s", dir)
			}
		})
	}
}

// TestBackToBackImports runs an import that waits for the running one while
// that one commits. The waiting import must not change the filter that the
// commit is saving (run with -race), and the saved filter must be usable at
// the next start without a rebuild.
func TestBackToBackImports(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var logs logtest.Buffer
	s := open(t, dir, withLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	a, b, c := storetest.Digests("a", 8000), storetest.Digests("b", 8000), storetest.Digests("c", 8000)
	importAll(t, s, storetest.Breach("Alpha"), a, 5000)
	var wg sync.WaitGroup
	for _, x := range []struct {
		name string
		ds   []breachd.Digest
	}{{"Beta", b}, {"Gamma", c}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Import(context.Background(), storetest.Breach(x.name), storetest.Batches(x.ds, 8000, nil)); err != nil {
				t.Errorf("Import(%s) = %v", x.name, err)
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	s = open(t, dir, withLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	defer s.Close()
	if got := logs.String(); !strings.Contains(got, "bloom filter loaded") {
		t.Fatalf("reopen logged %q, want the saved filter loaded", got)
	}
	wantBreaches(t, s, a, "Alpha")
	wantBreaches(t, s, b, "Beta")
	wantBreaches(t, s, c, "Gamma")
}

// TestBadgerLogs checks that Badger's messages, passed through slog's JSON
// handler, make valid records with one "msg" each.
func TestBadgerLogs(t *testing.T) {
	t.Parallel()
	var logs logtest.Buffer
	s := open(t, t.TempDir(), withLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	importAll(t, s, storetest.Breach("Alpha"), storetest.Digests("a", 100), 100)
	s.Close()
	var badger int
	for line := range strings.Lines(logs.String()) {
		if n := strings.Count(line, `"msg":`); n != 1 {
			t.Errorf("log line has %d msg keys: %s", n, line)
		}
		if strings.Contains(line, `"msg":"badger"`) {
			badger++
		}
	}
	if badger == 0 {
		t.Fatalf("no Badger lines at debug level in:\n%s", logs.String())
	}
}

// TestBulkBound checks a first import past MaxBulkDigests: exact counts,
// exact answers, and an earlier one abandoned past the bound left invisible.
func TestBulkBound(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := options(0)
	o.MaxBulkDigests = 1000
	s := open(t, dir, o)
	defer s.Close()
	a, b := storetest.Digests("a", 3000), storetest.Digests("b", 5000)
	if _, err := s.Import(t.Context(), storetest.Breach("Abandoned"), storetest.Batches(a, 700, context.Canceled)); err == nil {
		t.Fatal("abandoned import = nil")
	}
	st := importAll(t, s, storetest.Breach("Beta"), append(slices.Clone(b), b[:300]...), 700)
	if st.Received != 5300 || st.Duplicates != 300 || st.NewAccounts != 5000 || st.Version != 1 {
		t.Fatalf("stats = %+v, want 5300 received, 300 duplicates, 5000 new at version 1", st)
	}
	wantBreaches(t, s, b, "Beta")
	wantBreaches(t, s, a)
	if got := s.Stats().Keys; got != 5000 {
		t.Fatalf("Stats().Keys = %d, want 5000", got)
	}
}

// TestBulkSpill checks a first import sorted in runs spilled to files:
// duplicates across runs are counted once, answers are exact, and no spill
// file outlives its import, committed, abandoned or crashed.
func TestBulkSpill(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := options(0)
	o.BulkChunkDigests = 1000
	s := open(t, dir, o)
	a := storetest.Digests("a", 5500)
	spills := func() []string { ps, _ := filepath.Glob(filepath.Join(dir, "*.spill")); return ps }

	// Abandoned after spilling: its files go with it.
	errStop := errors.New("stop")
	if _, err := s.Import(t.Context(), storetest.Breach("Abandoned"), storetest.Batches(a, 700, errStop)); !errors.Is(err, errStop) {
		t.Fatalf("abandoned import = %v", err)
	}
	if ps := spills(); len(ps) != 0 {
		t.Fatalf("spill files after an abandoned import: %v", ps)
	}
	// Every digest twice, the repeats far apart: they meet only in the merge.
	st := importAll(t, s, storetest.Breach("Alpha"), append(slices.Clone(a), a...), 700)
	if st.Received != 11000 || st.Duplicates != 5500 || st.NewAccounts != 5500 {
		t.Fatalf("stats = %+v, want 11000 received, 5500 duplicates, 5500 new", st)
	}
	if ps := spills(); len(ps) != 0 {
		t.Fatalf("spill files after the commit: %v", ps)
	}
	wantBreaches(t, s, a, "Alpha")
	wantBreaches(t, s, storetest.Digests("absent", 2000))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash leaves run files; the next open collects them.
	if err := os.WriteFile(filepath.Join(dir, "breachd.bulk.123.spill"), make([]byte, 64), 0o600); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, o)
	defer s.Close()
	if _, err := s.Collect(t.Context()); err != nil {
		t.Fatal(err)
	}
	if ps := spills(); len(ps) != 0 {
		t.Fatalf("a crashed import's spill files after the collection: %v", ps)
	}
	wantBreaches(t, s, a, "Alpha")
}

// TestEmptyValueLog: a process killed just after Badger created a value
// log file, before it wrote the file's header, leaves a file of no bytes,
// and Badger refuses to open such a directory ("Create a new file"); seen
// once in TestReplicaKilled. Open removes the empty file, which held
// nothing, and every answer is there.
func TestEmptyValueLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir, options(0))
	ds := storetest.Digests("a", 1000)
	importAll(t, s, storetest.Breach("Alpha"), ds, 500)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// An empty value log, and an empty memtable log (make test's crash
	// harness: "while opening memtables err: while opening fid: 2 err:
	// Create a new file" after a SIGKILL during a collection).
	for _, name := range []string{"000009.vlog", "00009.mem"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s = open(t, dir, options(0))
	defer s.Close()
	wantBreaches(t, s, ds, "Alpha")
}

// TestImportKeepsAddedDate: a later import into a breach keeps the date it
// was added (latestbreach and breached_within read it), and marks it
// modified when it gains accounts; a manifest's own dates stand.
func TestImportKeepsAddedDate(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), options(0))
	added := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	ds := storetest.Digests("dates", 30)
	b := storetest.Breach("Alpha")
	first := b
	first.AddedDate = added
	importAll(t, s, first, ds[:10], 10)
	entry := func() *breachd.CatalogEntry {
		t.Helper()
		e, _, err := s.Breach(t.Context(), "Alpha")
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	if e := entry(); !e.AddedDate.Equal(added) || !e.ModifiedDate.IsZero() {
		t.Fatalf("after the first import: added %v, modified %v; want %v and none", e.AddedDate, e.ModifiedDate, added)
	}
	before := time.Now().UTC().Truncate(time.Second)
	importAll(t, s, b, ds[:20], 10) // ten new accounts, no dates given
	e := entry()
	if !e.AddedDate.Equal(added) || e.ModifiedDate.Before(before) || e.AccountCount != 20 {
		t.Fatalf("after a later import: added %v, modified %v, %d accounts; want %v, at or after %v, 20", e.AddedDate, e.ModifiedDate, e.AccountCount, added, before)
	}
	modified := e.ModifiedDate
	importAll(t, s, b, ds[:20], 10) // nothing new
	if e := entry(); !e.AddedDate.Equal(added) || !e.ModifiedDate.Equal(modified) {
		t.Fatalf("after an import of nothing new: added %v, modified %v; want %v, %v", e.AddedDate, e.ModifiedDate, added, modified)
	}
	given := b
	given.AddedDate, given.ModifiedDate = added.AddDate(1, 0, 0), added.AddDate(2, 0, 0)
	importAll(t, s, given, ds[20:], 10)
	if e := entry(); !e.AddedDate.Equal(given.AddedDate) || !e.ModifiedDate.Equal(given.ModifiedDate) {
		t.Fatalf("after an import whose manifest gives its dates: added %v, modified %v; want %v, %v", e.AddedDate, e.ModifiedDate, given.AddedDate, given.ModifiedDate)
	}
	// A correction is a modification; it keeps the date added.
	before = time.Now().UTC().Truncate(time.Second)
	corrected := b
	corrected.Title = "Alpha, corrected"
	if _, _, err := s.UpdateBreach(t.Context(), corrected); err != nil {
		t.Fatal(err)
	}
	if e := entry(); !e.AddedDate.Equal(given.AddedDate) || e.ModifiedDate.Before(before) || e.Title != "Alpha, corrected" {
		t.Fatalf("after a correction: added %v, modified %v; want %v, at or after %v", e.AddedDate, e.ModifiedDate, given.AddedDate, before)
	}
}
