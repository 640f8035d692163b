package server

import (
	"sync"
	"testing"

	"github.com/breachd/breachd"
)

// TestSummariesBounded: catalogue entries replaced by imports and
// corrections are not kept for ever (they were, one per entry ever
// answered with).
func TestSummariesBounded(t *testing.T) {
	t.Parallel()
	s := NewExposureServer(nil, nil, 1)
	defer s.pool.stop()
	for i := range 3 * maxSummaries {
		e := &breachd.CatalogEntry{Breach: breachd.Breach{Name: "B", Title: "B"}}
		if got := s.summary(e); got.GetName() != "B" || s.summary(e) != got {
			t.Fatalf("entry %d: summary %v, not cached", i, got)
		}
	}
	n := 0
	s.summaries.Range(func(any, any) bool { n++; return true })
	if n > maxSummaries {
		t.Errorf("%d summaries cached after %d entries, want at most %d", n, 3*maxSummaries, maxSummaries)
	}
}

// TestPoolStopWhileRunning: a stream's receiving goroutine can outlive its
// handler and hand work to the pool as the server stops it; stop must not
// race that hand-over (it closed the work channel, and make test's race
// detector once caught a send to it), and work handed over after stop is
// refused.
func TestPoolStopWhileRunning(t *testing.T) {
	t.Parallel()
	for range 50 {
		p := newPool(2)
		never := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for p.run(never, func() {}) {
				}
			})
		}
		p.stop()
		wg.Wait() // every sender saw the pool stop
		if p.run(never, func() { t.Error("work ran after stop") }) {
			t.Fatal("run after stop = true")
		}
	}
}
