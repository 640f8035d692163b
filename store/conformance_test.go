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
// spilling, then leaving the bulk load.
func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name    string
		maxBulk int
		chunk   int
	}{{"default", 0, 0}, {"bulk-bounded", 500, 0}, {"bulk-spilled", 0, 700}, {"spilled-then-bounded", 3000, 700}} {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Run(t, func(tb testing.TB, dir string) storetest.Backend {
				o := options(1024)
				o.MaxBulkDigests = tc.maxBulk
				if tc.chunk > 0 {
					o.BulkChunkDigests = tc.chunk
				}
				s, err := store.Open(context.Background(), dir, o)
				if err != nil {
					tb.Fatalf("Open(%s) = %v", dir, err)
				}
				return s
			})
		})
	}
}
