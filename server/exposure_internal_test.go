package server

import (
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
