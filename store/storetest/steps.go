package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Steps is a random history's record: its seed, drawn afresh each run
// (BREACHD_HISTORY_SEED=N runs seed N again), and what each step did, so
// that a failure says how to replay it and what led to it.
type Steps struct {
	t    *testing.T
	Seed uint64
	Step int
	did  []string
}

// NewSteps returns the record of a history and its random source; stream
// tells histories that share a seed apart.
func NewSteps(t *testing.T, stream uint64) (*Steps, *rand.Rand) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BREACHD_HISTORY_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("BREACHD_HISTORY_SEED=%q: %v", s, err)
		}
	}
	return &Steps{t: t, Seed: seed}, rand.New(rand.NewPCG(seed, stream))
}

// Did records what the current step does.
func (s *Steps) Did(format string, a ...any) {
	s.did = append(s.did, fmt.Sprintf(format, a...))
}

// Fatalf fails the test with the seed, the steps so far and the message.
func (s *Steps) Fatalf(format string, a ...any) {
	s.t.Helper()
	s.t.Fatalf("seed %d (BREACHD_HISTORY_SEED=%d reruns it), step %d of %q:\n%s", s.Seed, s.Seed, s.Step, s.did,
		fmt.Sprintf(format, a...))
}

// ReadWhile runs step while two goroutines read, each calling read in a
// loop with a random source of its own (from the seed) until step has
// returned, then returns everything the reads saw (passed to see), for
// the caller to check against its model. A read's error fails the test.
func ReadWhile[T any](s *Steps, step func(), read func(r *rand.Rand, see func(T)) error) []T {
	s.t.Helper()
	var stop atomic.Bool
	var wg sync.WaitGroup
	seen := make([][]T, 2)
	errs := make([]error, 2)
	for g := range seen {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(s.Seed, uint64(g)))
			see := func(v T) { seen[g] = append(seen[g], v) }
			for !stop.Load() {
				if err := read(r, see); err != nil {
					errs[g] = err
					return
				}
				runtime.Gosched() // let the step run
			}
		})
	}
	step()
	stop.Store(true)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		s.Fatalf("a read during the step: %v", err)
	}
	return append(seen[0], seen[1]...)
}
