package store_test

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// heldRead holds a read at "read-at-catalogue" (its catalogue loaded,
// nothing read yet) while a change runs.
type heldRead struct {
	armed        atomic.Bool
	once         sync.Once
	held, resume chan struct{}
}

// options returns o with the hook that holds the first read to get there
// once armed.
func (h *heldRead) options(o store.Options) store.Options {
	h.held, h.resume = make(chan struct{}), make(chan struct{})
	return store.WithHook(o, func(point string) {
		if point == "read-at-catalogue" && h.armed.Load() {
			h.once.Do(func() {
				close(h.held)
				<-h.resume
			})
		}
	})
}

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
	close(h.resume)
	<-done
	if err != nil {
		t.Fatal(err)
	}
}

// TestStaleCatalogueRead holds a lookup after it loaded its catalogue and
// before it reads, while a delete commits and its collection rewrites the
// rows (an email corpus) or drops the base (a password corpus). The answer
// must be its version's: the deleted breach's under the version before the
// delete, or none under the delete's. (Before corpus.readStable, the read
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
				pre := breachd.RangePrefix(uint32(h.B[0])<<12 | uint32(h.B[1])<<4 | uint32(h.B[2])>>4)
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
