package store

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/store/storetest"
)

// rawKeys counts the digest rows in Badger, visible or not.
func rawKeys(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{emailKind.tag}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func imp(t *testing.T, s *Store, name string, d []breachd.Digest, end error) {
	t.Helper()
	_, err := s.Import(context.Background(), breachd.Breach{Name: name, Title: name}, func(yield func([]breachd.Digest, error) bool) {
		if yield(d, nil) && end != nil {
			yield(nil, end)
		}
	})
	if (err != nil) != (end != nil) {
		t.Fatalf("Import(%s) = %v", name, err)
	}
}

func names(t *testing.T, s *Store, d breachd.Digest) []string {
	t.Helper()
	bs, _, err := s.Lookup(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, b := range bs {
		out = append(out, b.Name)
	}
	return out
}

func TestCollectDeleteUpdate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opts := DefaultOptions()
	s, err := Open(t.Context(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	a, b, g := storetest.Digests("a", 2000), storetest.Digests("b", 2000), storetest.Digests("g", 500)
	imp(t, s, "Alpha", a, nil)
	imp(t, s, "Beta", append(slices.Clone(b), a[:100]...), nil)
	// An abandoned import is collected by the store itself; Collect waits
	// for that and finds nothing left.
	imp(t, s, "Gamma", g, errors.New("interrupted"))
	st, err := s.Collect(t.Context())
	if err != nil || st.Segments != 0 || st.Deleted != 0 || st.Rewritten != 0 || len(st.Misattributed) != 0 {
		t.Fatalf("Collect = %+v, %v; want nothing left", st, err)
	}
	if n := rawKeys(t, s); n != 4000 {
		t.Fatalf("%d rows after collecting, want 4000", n)
	}

	removed, v, err := s.DeleteBreach(t.Context(), "Beta")
	if err != nil || removed != 2000 || v != 3 {
		t.Fatalf("DeleteBreach(Beta) = %d, %d, %v; want 2000 accounts removed at version 3", removed, v, err)
	}
	for _, d := range b[:50] {
		if got := names(t, s, d); len(got) != 0 {
			t.Fatalf("a deleted breach's account is in %v", got)
		}
	}
	if got := names(t, s, a[0]); !slices.Equal(got, []string{"Alpha"}) {
		t.Fatalf("a shared account is in %v, want only Alpha", got)
	}
	if st := s.Stats(); st.Keys != 2000 || st.Breaches != 1 || rawKeys(t, s) != 2000 {
		t.Fatalf("after the delete: %d keys, %d breaches, %d rows; want 2000, 1, 2000", st.Keys, st.Breaches, rawKeys(t, s))
	}
	if _, _, err := s.DeleteBreach(t.Context(), "Beta"); !errors.Is(err, breachd.ErrNotFound) {
		t.Fatalf("deleting twice = %v", err)
	}

	e, v, err := s.UpdateBreach(t.Context(), breachd.Breach{Name: "Alpha", Title: "Alpha, corrected", BreachDate: "2011-06-17"})
	if err != nil || v != 4 || e.Title != "Alpha, corrected" || e.AccountCount != 2000 {
		t.Fatalf("UpdateBreach = %+v, %d, %v", e, v, err)
	}
	if _, _, err := s.UpdateBreach(t.Context(), breachd.Breach{Name: "Nope", Title: "x"}); !errors.Is(err, breachd.ErrNotFound) {
		t.Fatalf("updating an unknown breach = %v", err)
	}

	// Deleted rows stay deleted through compaction and a restart (Badger
	// before 4.9.4 could bring them back), and a leftover filter file goes.
	if err := s.db.Flatten(2); err != nil {
		t.Fatal(err)
	}
	_ = s.db.RunValueLogGC(0.01) // nothing to rewrite is fine
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filterFile+".tmp123"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(t.Context(), dir, opts); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if tmps, _ := filepath.Glob(filepath.Join(dir, filterFile+".tmp*")); len(tmps) != 0 {
		t.Fatalf("leftover filter files after open: %v", tmps)
	}
	if _, err := s.Collect(t.Context()); err != nil { // after the one at open
		t.Fatal(err)
	}
	if n, st := rawKeys(t, s), s.Stats(); n != 2000 || st.Keys != 2000 || st.Version != 4 {
		t.Fatalf("after a restart: %d rows, %+v", n, st)
	}
	for _, d := range b {
		if got := names(t, s, d); len(got) != 0 {
			t.Fatalf("a deleted account came back in %v", got)
		}
	}
	bs, _, _ := s.Breaches(t.Context())
	if len(bs) != 1 || bs[0].Title != "Alpha, corrected" {
		t.Fatalf("catalogue after a restart = %+v", bs)
	}
	imp(t, s, "Beta", b, nil) // and the breach can come back whole
	if got := names(t, s, b[7]); !slices.Equal(got, []string{"Beta"}) {
		t.Fatalf("re-imported account is in %v", got)
	}
}

// legacyDelete does to s what a delete of breach name did before segment
// ids were counted, interrupted before its collection: the breach and its
// segment records are gone, its rows stay, and no counter says which ids
// were handed out.
func legacyDelete(t *testing.T, s *Store, name string) {
	t.Helper()
	c := s.cat.Load()
	err := s.db.Update(func(txn *badger.Txn) error {
		for id, n := range c.segNames {
			if n == name {
				if err := txn.Delete(segmentKey(id)); err != nil {
					return err
				}
			}
		}
		if err := txn.Delete(breachKey(name)); err != nil {
			return err
		}
		if err := txn.Delete(keyNextSegment); err != nil {
			return err
		}
		return txn.Set(keyCollect, []byte{1})
	})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := s.readCatalog()
	if err != nil {
		t.Fatal(err)
	}
	s.cat.Store(nc)
}

// TestLegacyCounter: a corpus written before segment ids were counted, with
// a delete's collection outstanding, gets its rows collected before an
// import is given an id, so none of them answers under the new breach.
func TestLegacyCounter(t *testing.T) {
	t.Parallel()
	s, err := Open(t.Context(), t.TempDir(), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, b, c := storetest.Digests("a", 1000), storetest.Digests("b", 3000), storetest.Digests("c", 500)
	imp(t, s, "Alpha", a, nil)
	imp(t, s, "Beta", b, nil)
	legacyDelete(t, s, "Beta")
	imp(t, s, "Gamma", c, nil)
	for _, d := range b {
		if got := names(t, s, d); len(got) != 0 {
			t.Fatalf("a deleted account answers %v", got)
		}
	}
	if got := names(t, s, c[0]); !slices.Equal(got, []string{"Gamma"}) {
		t.Fatalf("Gamma's account answers %v", got)
	}
	if n := rawKeys(t, s); n != 1500 {
		t.Fatalf("%d rows, want 1500", n)
	}
}

// TestCollectFindsMisattributed: a corpus that the bug of reused segment
// ids already damaged (a deleted breach's rows made another's) cannot be
// repaired from what is stored, but a full collection (breachd gc) names
// the breach and how many accounts it answers for beyond its count.
func TestCollectFindsMisattributed(t *testing.T) {
	t.Parallel()
	s, err := Open(t.Context(), t.TempDir(), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, b, c := storetest.Digests("a", 1000), storetest.Digests("b", 3000), storetest.Digests("c", 500)
	imp(t, s, "Alpha", a, nil)
	imp(t, s, "Beta", b, nil)
	betaSeg := uint32(0)
	for id, n := range s.cat.Load().segNames {
		if n == "Beta" {
			betaSeg = id
		}
	}
	legacyDelete(t, s, "Beta")
	// The old allocator: one past the highest recorded id, which is Beta's
	// when Beta was the last import.
	err = s.db.Update(func(txn *badger.Txn) error {
		txn.Delete(keyCollect)
		return txn.Set(keyNextSegment, binary.BigEndian.AppendUint64(nil, uint64(betaSeg)))
	})
	if err != nil {
		t.Fatal(err)
	}
	imp(t, s, "Gamma", c, nil)
	if got := names(t, s, b[0]); !slices.Equal(got, []string{"Gamma"}) {
		t.Fatalf("set-up: Beta's account answers %v, want the damage (Gamma)", got)
	}
	st, err := s.Collect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []Misattribution{{Breach: "Gamma", Rows: 3500, Counted: 500}}
	if !slices.Equal(st.Misattributed, want) {
		t.Fatalf("Collect().Misattributed = %+v, want %+v", st.Misattributed, want)
	}
}
