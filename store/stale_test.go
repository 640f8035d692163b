package store_test

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// heldRead holds a read at point, "read-at-catalogue" if empty (its
// catalogue loaded, nothing read yet), while a change runs: the at-th to
// get there once armed (the first if at is 0).
type heldRead struct {
	point        string
	at           int64
	armed        atomic.Bool
	reached      atomic.Int64
	resumed      sync.Once
	held, resume chan struct{}
}

// options returns o with the hook that holds the read.
func (h *heldRead) options(o store.Options) store.Options {
	h.held, h.resume = make(chan struct{}), make(chan struct{})
	return store.WithHook(o, func(point string) {
		if point == cmp.Or(h.point, "read-at-catalogue") && h.armed.Load() && h.reached.Add(1) == max(h.at, 1) {
			close(h.held)
			<-h.resume
		}
	})
}

// release lets the held read go on (once; a no-op after).
func (h *heldRead) release() { h.resumed.Do(func() { close(h.resume) }) }

// emails opens an email corpus whose reads h holds, without the lookup
// index: reads go to Badger.
func (h *heldRead) emails(t *testing.T) *store.Store {
	s := open(t, t.TempDir(), h.options(noIndex()))
	t.Cleanup(func() { s.Close() })
	return s
}

// across runs read on another goroutine, holds it there while change runs,
// then lets it read and waits for it.
func (h *heldRead) across(t *testing.T, read func(), change func() error) {
	t.Helper()
	done := make(chan struct{})
	h.armed.Store(true)
	go func() {
		defer close(done)
		read()
	}()
	<-h.held
	err := change()
	h.release()
	<-done
	if err != nil {
		t.Fatal(err)
	}
}

// TestStaleCatalogueRead holds a lookup after it loaded its catalogue and
// before it reads, while a delete commits and its collection rewrites the
// rows (an email corpus) or drops the base (a password corpus). The answer
// must be its version's: the deleted breach's under the version before the
// delete, or none under the delete's. (Before readStable, the read
// found the collected rows or no base, and answered "not exposed" under the
// version before the delete.)
func TestStaleCatalogueRead(t *testing.T) {
	t.Parallel()
	t.Run("email rows", func(t *testing.T) {
		t.Parallel()
		var h heldRead
		s := h.emails(t)
		gone := storetest.Digests("gone", 500)
		importAll(t, s, storetest.Breach("Gone"), gone, 100)
		importAll(t, s, storetest.Breach("Other"), storetest.Digests("other", 500), 100)
		_, before, err := s.Lookup(t.Context(), gone[7])
		if err != nil {
			t.Fatal(err)
		}
		var bs []*breachd.CatalogEntry
		var version uint64
		h.across(t, func() { bs, version, err = s.Lookup(context.Background(), gone[7]) }, func() error {
			_, _, err := s.DeleteBreach(t.Context(), "Gone") // and its collection
			return err
		})
		switch {
		case err != nil:
			t.Fatal(err)
		case version == before && !slices.Equal(names(bs), []string{"Gone"}):
			t.Errorf("at version %d (before the delete) the account answers %v, want Gone", version, names(bs))
		case version > before && len(bs) > 0:
			t.Errorf("at version %d (after the delete) the account answers %v, want none", version, names(bs))
		}
	})
	// A batch read across an import: the new breach's accounts were not
	// in the filter the batch was tested against; under the import's
	// version they must answer it.
	t.Run("email batch across an import", func(t *testing.T) {
		t.Parallel()
		var h heldRead
		s := h.emails(t)
		old := storetest.Digests("old", 500)
		fresh := storetest.Digests("fresh", 500)
		importAll(t, s, storetest.Breach("Old"), old, 100)
		_, before, err := s.Lookup(t.Context(), old[0])
		if err != nil {
			t.Fatal(err)
		}
		var packed []byte
		for _, d := range []breachd.Digest{old[3], fresh[5]} {
			packed = append(packed, d[:]...)
		}
		got := map[int][]string{}
		var version uint64
		h.across(t, func() {
			version, err = s.LookupBatch(context.Background(), packed, func(i int, bs []*breachd.CatalogEntry) {
				got[i] = names(bs)
			})
		}, func() error {
			_, err := s.Import(t.Context(), storetest.Breach("Fresh"), storetest.Batches(fresh, 100, nil))
			return err
		})
		want := map[int][]string{0: {"Old"}}
		if version > before {
			want[1] = []string{"Fresh"}
		}
		if err != nil || !maps.EqualFunc(got, want, slices.Equal) {
			t.Errorf("LookupBatch at version %d (the import's is %d) = %v, %v; want %v", version, before+1, got, err, want)
		}
	})
	for _, read := range []string{"lookup", "range"} {
		t.Run("password base/"+read, func(t *testing.T) {
			t.Parallel()
			k := breachd.SHA1
			var hr heldRead
			o := hr.options(options(0))
			o.Index = store.IndexOff
			p := openPw(t, t.TempDir(), k, o)
			defer p.Close()
			first := pwRecords(k, "first", 2000, 1)
			slices.SortFunc(first, func(a, b breachd.PasswordRecord) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
			if _, err := p.Import(t.Context(), release("first"), 0, pwBatches(first, 500, nil)); err != nil {
				t.Fatal(err)
			}
			if _, err := p.Import(t.Context(), release("second"), 0, pwBatches(pwRecords(k, "second", 10, 1), 500, nil)); err != nil {
				t.Fatal(err)
			}
			h, _ := breachd.PasswordHashFromBytes(k, first[7].Hash[:k.Size()])
			want, err := p.Lookup(t.Context(), h)
			if err != nil || want.Count != first[7].Count {
				t.Fatalf("Lookup = %+v, %v; want count %d", want, err, first[7].Count)
			}
			var count, version uint64
			hr.across(t, func() {
				if read == "lookup" {
					var e breachd.PasswordExposure
					e, err = p.Lookup(context.Background(), h)
					count, version = e.Count, e.CorpusVersion
					return
				}
				pre := store.RangeOf(h.B[:])
				version, err = p.Range(context.Background(), pre, func(hb []byte, n uint64) {
					if bytes.Equal(hb, h.Bytes()) {
						count = n
					}
				})
			}, func() error {
				_, _, err := p.DeleteBreach(t.Context(), "first") // drops the base
				return err
			})
			switch {
			case err != nil:
				t.Fatal(err)
			case version == want.CorpusVersion && count != want.Count:
				t.Errorf("%s at version %d (before the delete) = count %d, want %d", read, version, count, want.Count)
			case version > want.CorpusVersion && count != 0:
				t.Errorf("%s at version %d (after the delete) = count %d, want 0", read, version, count)
			}
		})
	}
}

// TestReconcileAcrossDelete holds an exposure reconcile after it loaded the
// email catalogue, while a breach it has not yet seen is deleted and the
// first batch of the delete's collection has removed some of its rows.
// The breach's watched accounts must get all of its "added" events or
// none, and "removed" events for just those added. (Before, the reconcile
// read the half-collected rows under the catalogue that still held the
// breach: the first batch's accounts got no event, the others an "added"
// and then a "removed".)
func TestReconcileAcrossDelete(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	// The collection is held past its first batch: about 6,500 rows with
	// the tests' 4 MiB memtable, committed while the next are read.
	collection := heldRead{point: "collect-row", at: 9000}
	emails := open(t, store.EmailDir(dir), collection.options(options(0)))
	defer emails.Close()
	defer collection.release() // before the Close: a failure must not leave the collection held
	h := heldRead{point: "reconcile-at-catalogue"}
	w, err := store.OpenWatchlists(ctx, store.WatchDir(dir), emails, h.options(options(0)))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	importAll(t, emails, storetest.Breach("Base"), storetest.Digests("base", 1000), 1000)
	if _, err := w.Create(ctx, "users"); err != nil {
		t.Fatal(err)
	}
	gone := storetest.Digests("gone", 10000)
	if _, err := w.Add(ctx, "users", storetest.Batches(gone, 4096, nil)); err != nil {
		t.Fatal(err)
	}
	importAll(t, emails, storetest.Breach("Gone"), gone, 5000)
	first := slices.MinFunc(gone, func(a, b breachd.Digest) int { return bytes.Compare(a[:], b[:]) })

	deleted := make(chan error, 1)
	h.across(t, func() {
		_, err = w.Reconcile(context.Background())
	}, func() error {
		collection.armed.Store(true)
		go func() {
			_, _, err := emails.DeleteBreach(context.Background(), "Gone")
			deleted <- err
		}()
		<-collection.held
		// The first batch commits in the background: wait until the
		// first of the breach's rows is gone.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			n, err := emails.RowEntries(first)
			if err != nil || n == 0 {
				return err
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the collection's first batch never showed: the first row still holds %d entries", n)
			}
		}
	})
	collection.release()
	if err != nil {
		t.Fatal(err)
	}
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	if _, err := w.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	got, _, _ := exposures(t, w, 0)
	added, removed := got[breachd.EventExposureAdded+" users Gone"], got[breachd.EventExposureRemoved+" users Gone"]
	slices.Sort(added)
	slices.Sort(removed)
	if len(added) != 0 && len(added) != len(gone) || !slices.Equal(added, removed) {
		t.Errorf("the deleted breach's %d watched accounts: %d added, %d removed; want all added and removed, or none", len(gone), len(added), len(removed))
	}
}
