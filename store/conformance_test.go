package store_test

import (
	"context"
	"testing"

	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// TestConformance runs the suite every corpus backend must pass over the
// Badger store: with a filter small enough that the imports grow it, and
// again with first imports bounded to 500 buffered digests, so that they
// leave the bulk load midway.
func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name    string
		maxBulk int
	}{{"default", 0}, {"bulk-bounded", 500}} {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Run(t, func(tb testing.TB, dir string) storetest.Backend {
				o := options(1024)
				o.MaxBulkDigests = tc.maxBulk
				s, err := store.Open(context.Background(), dir, o)
				if err != nil {
					tb.Fatalf("Open(%s) = %v", dir, err)
				}
				return s
			})
		})
	}
}
