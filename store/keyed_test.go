package store_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// windows returns every 8-byte window of ds.
func windows(ds []breachd.Digest) map[[8]byte]bool {
	out := map[[8]byte]bool{}
	for _, d := range ds {
		for i := 0; i+8 <= len(d); i++ {
			out[[8]byte(d[i:i+8])] = true
		}
	}
	return out
}

// findWindows returns how many files under dir hold any of ws.
func findWindows(t *testing.T, dir string, ws map[[8]byte]bool) (files []string) {
	t.Helper()
	filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+8 <= len(b); i++ {
			if ws[[8]byte(b[i:i+8])] {
				files = append(files, filepath.Base(path))
				break
			}
		}
		return nil
	})
	return files
}

// newIndexKey returns a new index key, its file in a temporary directory.
func newIndexKey(tb testing.TB) *store.IndexKey {
	tb.Helper()
	key, err := store.GenerateIndexKey(filepath.Join(tb.TempDir(), "index.key"))
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

func openKeyed(tb testing.TB, dir string, key *store.IndexKey) (*store.Store, error) {
	o := options(0)
	o.IndexKey = key
	return store.Open(context.Background(), dir, o)
}

// TestKeyedIndex: a corpus of plain digests, rekeyed, answers exactly as
// before through Lookup and LookupBatch, takes imports and deletes, and
// holds no 8-byte window of any account's digest (the plain corpus did);
// it opens with its key only, saying why otherwise. A corpus keyed from
// its first import (a bulk load, which wipes the store) keeps its key's
// record.
func TestKeyedIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	data := t.TempDir()
	known := storetest.Digests("sega", 1500)
	unknown := storetest.Digests("nobody", 1500)
	s := open(t, store.EmailDir(data), options(0))
	importAll(t, s, storetest.Breach("Sega"), known, 1000)
	importAll(t, s, storetest.Breach("Old"), known[:100], 100)
	s.Close()
	ws := windows(known[:1000])
	if files := findWindows(t, data, ws); len(files) == 0 {
		t.Fatal("the plain corpus holds no window of its digests: the search finds nothing")
	}

	key := newIndexKey(t)
	st, err := store.Rekey(ctx, data, key, options(0))
	if err != nil || st.Rows != 1500 {
		t.Fatalf("Rekey = %+v, %v", st, err)
	}
	if files := findWindows(t, data, ws); len(files) > 0 {
		t.Fatalf("the keyed data directory holds windows of account digests in %v", files)
	}
	if _, err := store.Open(ctx, store.EmailDir(data), options(0)); !errors.Is(err, store.ErrIndexKey) || !strings.Contains(err.Error(), "privacy.index_key_file") {
		t.Fatalf("opened without its key: %v", err)
	}
	other, _ := store.GenerateIndexKey(filepath.Join(t.TempDir(), "other.key"))
	if _, err := openKeyed(t, store.EmailDir(data), other); !errors.Is(err, store.ErrIndexKey) || !strings.Contains(err.Error(), key.ID()) {
		t.Fatalf("opened with another key: %v", err)
	}
	if _, err := store.Rekey(ctx, data, key, options(0)); !errors.Is(err, store.ErrIndexKey) {
		t.Fatalf("rekeyed twice: %v", err)
	}
	s, err = openKeyed(t, store.EmailDir(data), key)
	if err != nil {
		t.Fatal(err)
	}
	wantBreaches(t, s, known[:100], "Old", "Sega")
	wantBreaches(t, s, known[100:], "Sega")
	wantBreaches(t, s, unknown)
	var packed []byte
	for _, d := range append(known[1490:], unknown[:10]...) {
		packed = append(packed, d[:]...)
	}
	var hits []int
	if _, err := s.LookupBatch(ctx, packed, func(i int, _ []*breachd.CatalogEntry) { hits = append(hits, i) }); err != nil || len(hits) != 10 || hits[9] != 9 {
		t.Fatalf("LookupBatch hits %v, %v", hits, err)
	}
	importAll(t, s, storetest.Breach("New"), unknown[:500], 250)
	wantBreaches(t, s, unknown[:500], "New")
	if _, _, err := s.DeleteBreach(ctx, "Sega"); err != nil {
		t.Fatal(err)
	}
	wantBreaches(t, s, known[100:])
	wantBreaches(t, s, known[:100], "Old")
	s.Close()

	// Keyed from birth: the first import's bulk load keeps the record.
	fresh := filepath.Join(t.TempDir(), "emails")
	s, err = openKeyed(t, fresh, key)
	if err != nil {
		t.Fatal(err)
	}
	importAll(t, s, storetest.Breach("Sega"), known, 1000)
	s.Close()
	if _, err := store.Open(ctx, fresh, options(0)); !errors.Is(err, store.ErrIndexKey) {
		t.Fatalf("a corpus keyed from birth opened without its key: %v", err)
	}
	if files := findWindows(t, filepath.Dir(fresh), ws); len(files) > 0 {
		t.Fatalf("a corpus keyed from birth holds windows of account digests in %v", files)
	}
	// A corpus of plain digests is refused with a key: rekey it first.
	plain := store.EmailDir(t.TempDir())
	s = open(t, plain, options(0))
	importAll(t, s, storetest.Breach("Sega"), known[:10], 10)
	s.Close()
	if _, err := openKeyed(t, plain, key); !errors.Is(err, store.ErrIndexKey) || !strings.Contains(err.Error(), "breachd rekey") {
		t.Fatalf("a plain corpus opened with a key: %v", err)
	}
}

// TestCrashRekey kills a rekey at each of its steps: the data directory
// then answers exactly, plain (undone) or keyed (finished), and a rekey
// run again completes it.
func TestCrashRekey(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	t.Parallel()
	ctx := context.Background()
	root := t.TempDir()
	base := filepath.Join(root, "base")
	known := storetest.Digests("sega", 5000)
	s := open(t, store.EmailDir(base), options(0))
	importAll(t, s, storetest.Breach("Sega"), known, 2500)
	s.Close()
	keyFile := filepath.Join(root, "index.key")
	key, err := store.GenerateIndexKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	for run, point := range []string{"rekey-marked:1", "rekey-moved-aside:1", "rekey-swapped:1", "rekey-swapped:2"} {
		dir := filepath.Join(root, fmt.Sprintf("run-%d", run))
		copyDir(t, base, dir)
		cmd := crashChild(dir, "rekey", point)
		cmd.Env = append(cmd.Env, "BREACHD_CRASH_KEY="+keyFile)
		if err := cmd.Run(); err != nil && !killed(err) {
			t.Fatalf("%s: child failed: %v", point, err)
		}
		if _, err := store.MigrateLayout(dir, nil); err != nil {
			t.Fatalf("%s: finishing: %v", point, err)
		}
		s, err := store.Open(ctx, store.EmailDir(dir), options(0))
		keyed := errors.Is(err, store.ErrIndexKey)
		if keyed {
			s, err = openKeyed(t, store.EmailDir(dir), key)
		}
		if err != nil {
			t.Fatalf("%s: %v", point, err)
		}
		wantBreaches(t, s, known, "Sega")
		s.Close()
		if !keyed {
			if _, err := store.Rekey(ctx, dir, key, options(0)); err != nil {
				t.Fatalf("%s: rekeying again: %v", point, err)
			}
		}
		s, err = openKeyed(t, store.EmailDir(dir), key)
		if err != nil {
			t.Fatalf("%s, then rekeyed: %v", point, err)
		}
		wantBreaches(t, s, known, "Sega")
		s.Close()
		t.Logf("killed at %s: the corpus was %s", point, map[bool]string{true: "keyed", false: "plain"}[keyed])
	}
}

// TestKeyedWatchlists: on a keyed corpus, watchlists are keyed too (the
// diff meets the keyed rows), their events still name each account by its
// digest, and the watch corpus holds no 8-byte window of a watched
// account's digest outside the outbox's events.
func TestKeyedWatchlists(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	data := t.TempDir()
	key := newIndexKey(t)
	emails, err := openKeyed(t, store.EmailDir(data), key)
	if err != nil {
		t.Fatal(err)
	}
	defer emails.Close()
	w := openWatch(t, store.WatchDir(data), emails)
	users := storetest.Digests("users", 3000)
	if _, err := w.Create(ctx, "users"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Add(ctx, "users", storetest.Batches(users, 1000, nil)); err != nil {
		t.Fatal(err)
	}
	// Closed for the search: an open Badger's value log is a large
	// preallocated file.
	w.Close()
	if files := findWindows(t, store.WatchDir(data), windows(users)); len(files) > 0 {
		t.Fatalf("a keyed watchlist holds windows of its digests in %v", files)
	}
	w = openWatch(t, store.WatchDir(data), emails)
	importAll(t, emails, storetest.Breach("Sega"), append(storetest.Digests("others", 5000), users[:1500]...), 1000)
	if st, err := w.Reconcile(ctx); err != nil || st.Added != 1500 {
		t.Fatalf("Reconcile = %+v, %v", st, err)
	}
	got, _, _ := exposures(t, w, 0)
	for _, accounts := range got {
		slices.Sort(accounts) // in the keyed order
	}
	if !slices.Equal(got[breachd.EventExposureAdded+" users Sega"], hexes(users[:1500])) {
		t.Fatalf("added: %d accounts, not the 1,500 watched in Sega by their digests", len(got[breachd.EventExposureAdded+" users Sega"]))
	}
	if n, err := w.Remove(ctx, "users", storetest.Batches(users[:500], 500, nil)); err != nil || n != 500 {
		t.Fatalf("Remove = %d, %v", n, err)
	}
	if _, _, err := emails.DeleteBreach(ctx, "Sega"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	got, _, _ = exposures(t, w, 0)
	for _, accounts := range got {
		slices.Sort(accounts)
	}
	if !slices.Equal(got[breachd.EventExposureRemoved+" users Sega"], hexes(users[500:1500])) {
		t.Fatalf("removed: %d accounts, want the 1,000 still watched", len(got[breachd.EventExposureRemoved+" users Sega"]))
	}
	w.Close()
}
