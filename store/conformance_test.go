package store_test

import (
	"context"
	"testing"

	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// TestConformance runs the suite every corpus backend must pass over the
// Badger store, with a filter small enough that the imports grow it.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(tb testing.TB, dir string) storetest.Backend {
		s, err := store.Open(context.Background(), dir, options(1024))
		if err != nil {
			tb.Fatalf("Open(%s) = %v", dir, err)
		}
		return s
	})
}
