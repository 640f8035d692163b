package quota

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/breachd/breachd"
)

// Limits are a token bucket's shape: Rate tokens per second, up to Burst.
type Limits struct {
	Rate  float64
	Burst int
}

// Validate reports an unusable shape as a *breachd.OptionError.
func (l Limits) Validate(prefix string) error {
	switch {
	case !(l.Rate > 0) || math.IsInf(l.Rate, 0):
		return &breachd.OptionError{Option: prefix + "Rate", Value: l.Rate, Want: "a positive number of requests (digests) per second"}
	case l.Burst < 1:
		return &breachd.OptionError{Option: prefix + "Burst", Value: l.Burst, Want: "at least 1"}
	}
	return nil
}

// ExceededError is a refusal: the quota is used up for now.
type ExceededError struct {
	Noun      string // "principal", or "address" for a limiter of source addresses
	Principal string
	Cost      int
	Limits    Limits
	After     time.Duration // when the cost will be available
}

func (e *ExceededError) Error() string {
	noun := e.Noun
	if noun == "" {
		noun = "principal"
	}
	return fmt.Sprintf("quota exceeded for %s %s: %g per second, burst %d; retry in %s",
		noun, breachd.Quote(e.Principal), e.Limits.Rate, e.Limits.Burst, e.After.Round(time.Millisecond))
}

// Unwrap gives the error its kind.
func (e *ExceededError) Unwrap() error { return breachd.ErrQuotaExceeded }

// RetryAfter says when to try again.
func (e *ExceededError) RetryAfter() time.Duration { return e.After }

// Limiter holds the buckets of every principal seen. It is safe for
// concurrent use.
type Limiter struct {
	def        Limits
	maxStreams int
	clock      Clock
	noun       string // what a bucket's name is, in messages

	buckets sync.Map // principal name -> *bucket; read on every call without a lock
	// count is the buckets held; past sweepAt the full ones are dropped
	// (a full bucket is a new one), so that a limiter keyed by source
	// address does not grow with every address ever seen.
	count, sweepAt atomic.Int64
	sweepMu        sync.Mutex

	mu      sync.Mutex     // guards streams
	streams map[string]int // open streams by principal name
}

type bucket struct {
	lim    *rate.Limiter
	limits Limits
}

// Clock tells the time and waits for it: the buckets fill by it. Tests
// pass one they move by hand, so that no test sleeps to let a bucket fill.
type Clock interface {
	Now() time.Time
	// After is time.After: the channel receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

// realClock is the system's clock.
type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Option configures a Limiter.
type Option func(*Limiter)

// WithClock makes the limiter fill its buckets and wait by c instead of
// the system's clock.
func WithClock(c Clock) Option { return func(l *Limiter) { l.clock = c } }

// Naming says what the limiter's bucket names are, for its refusals:
// "principal" (the default), or "address" for one keyed by source address.
func Naming(noun string) Option { return func(l *Limiter) { l.noun = noun } }

// New returns a limiter with default limits def for principals that have
// none of their own, and at most maxStreams concurrent streams per principal.
func New(def Limits, maxStreams int, opts ...Option) (*Limiter, error) {
	if err := def.Validate("Quota."); err != nil {
		return nil, err
	}
	if maxStreams < 1 {
		return nil, &breachd.OptionError{Option: "Quota.MaxStreams", Value: maxStreams, Want: "at least 1"}
	}
	l := &Limiter{def: def, maxStreams: maxStreams, clock: realClock{}, noun: "principal", streams: map[string]int{}}
	l.sweepAt.Store(minSweep)
	for _, o := range opts {
		o(l)
	}
	return l, nil
}

// bucket returns the principal's bucket, made (or remade, when its limits
// changed, as after a key was re-created) with own limits, or the defaults.
func (l *Limiter) bucket(name string, own Limits) *bucket {
	lim := l.limits(own)
	if v, ok := l.buckets.Load(name); ok && v.(*bucket).limits == lim {
		return v.(*bucket)
	}
	b := &bucket{lim: rate.NewLimiter(rate.Limit(lim.Rate), lim.Burst), limits: lim}
	if _, had := l.buckets.Swap(name, b); !had { // a race here at worst starts a bucket twice
		if l.count.Add(1) > l.sweepAt.Load() {
			l.sweep()
		}
	}
	return b
}

// limits returns a principal's own limits, or the defaults if it has none.
func (l *Limiter) limits(own Limits) Limits {
	if own.Rate > 0 && own.Burst > 0 {
		return own
	}
	return l.def
}

// minSweep is the number of buckets below which none are dropped.
const minSweep = 4096

// sweep drops the buckets that are full again: the next call of their
// principal (or address) starts a new, equally full one. A call that
// loaded a bucket just before it went is charged to the dropped one, so
// that call is free: at most one call per dropped bucket.
func (l *Limiter) sweep() {
	l.sweepMu.Lock()
	defer l.sweepMu.Unlock()
	if l.count.Load() <= l.sweepAt.Load() {
		return // another sweep just ran
	}
	now := l.clock.Now()
	l.buckets.Range(func(k, v any) bool {
		b := v.(*bucket)
		if b.lim.TokensAt(now) >= float64(b.limits.Burst) && l.buckets.CompareAndDelete(k, v) {
			l.count.Add(-1)
		}
		return true
	})
	l.sweepAt.Store(max(minSweep, 2*l.count.Load()))
}

// Buckets returns the number of buckets held (principals or addresses
// seen recently).
func (l *Limiter) Buckets() int { return int(l.count.Load()) }

// MaxCost returns the largest cost one caller can count on Wait taking
// with maxWait, again and again, for a principal with limits own (or the
// defaults): the burst, or what the bucket refills in maxWait if that is
// less. A bulk stream sized to it is paced by its quota, never refused
// by it (unless several of the principal's streams share the bucket).
func (l *Limiter) MaxCost(own Limits, maxWait time.Duration) int {
	lim := l.limits(own)
	n := lim.Burst
	if refill := lim.Rate * maxWait.Seconds(); maxWait > 0 && refill < float64(n) {
		n = int(refill)
	}
	return max(1, n)
}

// Take charges cost tokens to the principal now, or refuses with an
// *ExceededError saying when they will be there. A cost above the burst can
// never be paid and is refused as such.
func (l *Limiter) Take(name string, own Limits, cost int) error {
	return l.Wait(context.Background(), name, own, cost, 0)
}

// Wait charges cost tokens, waiting up to maxWait (and while ctx lasts) for
// them: this paces a bulk stream to its quota instead of failing it. When
// the wait would be longer it charges nothing and refuses like Take.
func (l *Limiter) Wait(ctx context.Context, name string, own Limits, cost int, maxWait time.Duration) error {
	b := l.bucket(name, own)
	if cost > b.limits.Burst {
		return breachd.Errorf(breachd.ErrQuotaExceeded, "a request of %d exceeds %s %s's burst of %d: send smaller batches",
			cost, l.noun, breachd.Quote(name), b.limits.Burst)
	}
	now := l.clock.Now()
	if maxWait <= 0 {
		// A call that may not wait takes its tokens or nothing: a
		// reservation cancelled afterwards would, for a moment, push the
		// delay every concurrent refusal reports past 1/rate.
		if b.lim.AllowN(now, cost) {
			return nil
		}
		missing := float64(cost) - b.lim.TokensAt(now)
		d := time.Duration(math.Ceil(missing / float64(b.lim.Limit()) * float64(time.Second)))
		return &ExceededError{Noun: l.noun, Principal: name, Cost: cost, Limits: b.limits, After: max(d, time.Millisecond)}
	}
	r := b.lim.ReserveN(now, cost)
	d := r.DelayFrom(now)
	if d == 0 {
		return nil
	}
	if d > maxWait {
		r.CancelAt(now)
		return &ExceededError{Noun: l.noun, Principal: name, Cost: cost, Limits: b.limits, After: d}
	}
	select {
	case <-l.clock.After(d):
		return nil
	case <-ctx.Done():
		r.CancelAt(l.clock.Now())
		return ctx.Err()
	}
}

// CanOpenStream returns the error OpenStream would return for name now,
// without counting a stream: a cheap early refusal (OpenStream decides).
func (l *Limiter) CanOpenStream(name string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.streamsFull(name)
}

func (l *Limiter) streamsFull(name string) error {
	if l.streams[name] >= l.maxStreams {
		return breachd.Errorf(breachd.ErrQuotaExceeded, "%s %s already has %d streams open, the most allowed: wait for one to end",
			l.noun, breachd.Quote(name), l.maxStreams)
	}
	return nil
}

// OpenStream counts a stream of the principal's, refusing one beyond the
// cap; the caller calls the returned function when the stream ends.
func (l *Limiter) OpenStream(name string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.streamsFull(name); err != nil {
		return nil, err
	}
	l.streams[name]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.streams[name]--; l.streams[name] == 0 {
				delete(l.streams, name)
			}
		})
	}, nil
}
