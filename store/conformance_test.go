package store_test

import (
	"context"
	"testing"

	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// TestConformance runs the suite every corpus backend must pass over the
// Badger store: with a filter small enough that the imports grow it; with
// first imports bounded to 500 buffered digests, so that they leave the bulk
// load midway; with first imports spilling sorted runs of 700 digests; and
// spilling, then leaving the bulk load; with the lookup index built inline
// (every lookup after a commit reads it), and with no index (every lookup
// confirms in Badger). The others build it in the background, so lookups
// switch from Badger to the index as they run.
func TestConformance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		maxBulk int
		chunk   int
		index   store.IndexMode
	}{
		{"default", 0, 0, store.IndexBackground}, {"bulk-bounded", 500, 0, store.IndexBackground},
		{"bulk-spilled", 0, 700, store.IndexBackground}, {"spilled-then-bounded", 3000, 700, store.IndexBackground},
		{"index-inline", 0, 0, store.IndexInline}, {"index-off", 0, 0, store.IndexOff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			storetest.Run(t, func(tb testing.TB, dir string) storetest.Backend {
				o := options(1024)
				o.MaxBulkDigests, o.Index = tc.maxBulk, tc.index
				if tc.chunk > 0 {
					o.BulkChunkDigests = tc.chunk
				}
				s, err := store.Open(context.Background(), dir, o)
				if err != nil {
					tb.Fatalf("Open(%s) = %v", dir, err)
				}
				return s
			}, true)
		})
	}
}
