package quota_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/quota"
)

// fakeClock is a quota.Clock moved by hand: tests never sleep for a bucket
// to fill.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
	waiting chan struct{} // receives when After is called
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC), waiting: make(chan struct{}, 16)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	c.waiting <- struct{}{}
	return ch
}

// Advance moves the clock by d and wakes the waiters it passes.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
}

func TestTake(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	l, err := quota.New(quota.Limits{Rate: 10, Burst: 5}, 2, quota.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := l.Take("a", quota.Limits{}, 1); err != nil {
			t.Fatalf("call %d within the burst = %v", i, err)
		}
	}
	err = l.Take("a", quota.Limits{}, 1)
	var ex *quota.ExceededError
	if !errors.As(err, &ex) || !errors.Is(err, breachd.ErrQuotaExceeded) || ex.RetryAfter() != 100*time.Millisecond {
		t.Fatalf("call past the burst = %v, want ExceededError with a retry of 100ms (one token at 10/s)", err)
	}
	if err := l.Take("b", quota.Limits{}, 5); err != nil {
		t.Fatalf("another principal's bucket is its own: %v", err)
	}
	if err := l.Take("c", quota.Limits{Rate: 1000, Burst: 100}, 50); err != nil {
		t.Fatalf("own limits: %v", err)
	}
	if err := l.Take("a", quota.Limits{}, 6); !errors.Is(err, breachd.ErrQuotaExceeded) || errors.As(err, &ex) {
		t.Fatalf("a cost over the burst = %v, want a refusal without a retry time", err)
	}
	clock.Advance(ex.RetryAfter() - time.Millisecond)
	if err := l.Take("a", quota.Limits{}, 1); !errors.Is(err, breachd.ErrQuotaExceeded) {
		t.Fatalf("a millisecond before the retry time = %v, want a refusal", err)
	}
	clock.Advance(time.Millisecond)
	if err := l.Take("a", quota.Limits{}, 1); err != nil {
		t.Fatalf("after waiting as told = %v", err)
	}
}

// TestWait: a cost within maxWait is paced, not refused: Wait returns once
// the clock has moved on by the delay, not before; one beyond maxWait is
// refused and charges nothing; a wait whose context ends gives its tokens
// back.
func TestWait(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	l, err := quota.New(quota.Limits{Rate: 100, Burst: 10}, 2, quota.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Wait(t.Context(), "a", quota.Limits{}, 10, time.Second); err != nil {
		t.Fatalf("the burst = %v", err)
	}
	if err := l.Wait(t.Context(), "a", quota.Limits{}, 10, 50*time.Millisecond); !errors.Is(err, breachd.ErrQuotaExceeded) {
		t.Fatalf("a wait of 100ms with maxWait 50ms = %v, want a refusal", err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Wait(t.Context(), "a", quota.Limits{}, 10, time.Second) }()
	<-clock.waiting
	clock.Advance(99 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Wait returned %v a millisecond early", err)
	default:
	}
	clock.Advance(time.Millisecond)
	if err := <-done; err != nil {
		t.Fatalf("Wait after the delay = %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	go func() { done <- l.Wait(ctx, "a", quota.Limits{}, 10, time.Second) }()
	<-clock.waiting
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with its context cancelled = %v", err)
	}
	clock.Advance(100 * time.Millisecond) // the cancelled wait's tokens came back: a burst is there again
	if err := l.Take("a", quota.Limits{}, 10); err != nil {
		t.Fatalf("after a cancelled wait gave its tokens back = %v", err)
	}
}

// TestMaxCost: the cost MaxCost names is paced, never refused, by a
// bucket that is already empty; one more is refused at once.
func TestMaxCost(t *testing.T) {
	t.Parallel()
	def := quota.Limits{Rate: 1000, Burst: 20_000}
	for _, tc := range []struct {
		name    string
		own     quota.Limits
		maxWait time.Duration
		want    int
	}{
		{"the defaults: 5s of refill", quota.Limits{}, 5 * time.Second, 5000},
		{"own limits: the burst is less", quota.Limits{Rate: 1000, Burst: 2000}, 5 * time.Second, 2000},
		{"own limits: 3s of refill", quota.Limits{Rate: 700, Burst: 9000}, 3 * time.Second, 2100},
		{"no wait: the burst", quota.Limits{}, 0, 20_000},
		{"a trickle: at least one", quota.Limits{Rate: 0.1, Burst: 10}, 5 * time.Second, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock()
			l, err := quota.New(def, 2, quota.WithClock(clock))
			if err != nil {
				t.Fatal(err)
			}
			n := l.MaxCost(tc.own, tc.maxWait)
			if n != tc.want {
				t.Fatalf("MaxCost = %d, want %d", n, tc.want)
			}
			if tc.maxWait == 0 || tc.want == 1 {
				return
			}
			lim := def
			if tc.own != (quota.Limits{}) {
				lim = tc.own
			}
			burst, refill := lim.Burst, time.Duration(float64(n)/lim.Rate*float64(time.Second))
			if err := l.Take("p", tc.own, burst); err != nil {
				t.Fatalf("emptying the bucket: %v", err)
			}
			if err := l.Wait(t.Context(), "p", tc.own, n+1, tc.maxWait); !errors.Is(err, breachd.ErrQuotaExceeded) {
				t.Fatalf("Wait(MaxCost+1) on an empty bucket = %v, want a refusal", err)
			}
			for i := range 3 { // again and again: each waits, none is refused
				done := make(chan error, 1)
				go func() { done <- l.Wait(t.Context(), "p", tc.own, n, tc.maxWait) }()
				select {
				case err := <-done:
					t.Fatalf("Wait(MaxCost) %d on an empty bucket = %v at once, want a wait", i, err)
				case <-clock.waiting:
				}
				clock.Advance(refill) // just what it waits for: the bucket is empty again
				if err := <-done; err != nil {
					t.Fatalf("Wait(MaxCost) %d = %v", i, err)
				}
			}
		})
	}
}

func TestStreams(t *testing.T) {
	t.Parallel()
	l, _ := quota.New(quota.Limits{Rate: 1, Burst: 1}, 2)
	r1, _ := l.OpenStream("a")
	r2, _ := l.OpenStream("a")
	if _, err := l.OpenStream("a"); !errors.Is(err, breachd.ErrQuotaExceeded) {
		t.Fatalf("third stream = %v", err)
	}
	r1()
	r1() // releasing twice counts once
	if _, err := l.OpenStream("a"); err != nil {
		t.Fatalf("stream after a release = %v", err)
	}
	if _, err := l.OpenStream("a"); err == nil {
		t.Fatal("a double release freed two places")
	}
	r2()
}

func TestNewRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		l   quota.Limits
		max int
		opt string
	}{{quota.Limits{Rate: 0, Burst: 1}, 1, "Quota.Rate"}, {quota.Limits{Rate: 1, Burst: 0}, 1, "Quota.Burst"}, {quota.Limits{Rate: 1, Burst: 1}, 0, "Quota.MaxStreams"}} {
		_, err := quota.New(tc.l, tc.max)
		var oe *breachd.OptionError
		if !errors.As(err, &oe) || oe.Option != tc.opt {
			t.Errorf("New(%+v, %d) = %v, want an OptionError naming %s", tc.l, tc.max, err, tc.opt)
		}
	}
}

// TestForgetsFullBuckets: a limiter keyed by source address drops the
// buckets that are full again, so it holds only recent callers, and never
// one that is still paying off its burst.
func TestForgetsFullBuckets(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	lim := quota.Limits{Rate: 10, Burst: 5}
	l, err := quota.New(lim, 1, quota.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	callers := func(round, n int) {
		for i := range n {
			if err := l.Take(fmt.Sprintf("addr-%d-%d", round, i), lim, 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	for round := range 4 {
		callers(round, 5000)
		clock.Advance(time.Second) // every one of them is full again
	}
	// "busy" spends its burst; then enough new callers to sweep, at the
	// same instant: busy must be kept, still empty.
	for range 5 {
		if err := l.Take("busy", lim, 1); err != nil {
			t.Fatal(err)
		}
	}
	callers(4, 10_000)
	if n := l.Buckets(); n > 15_000 {
		t.Errorf("%d buckets held after 30,000 callers, 20,000 of them full again; want the full ones dropped", n)
	}
	if err := l.Take("busy", lim, 1); err == nil {
		t.Error("a caller that had spent its burst was forgotten by a sweep and admitted again")
	}
}
