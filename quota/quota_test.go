package quota_test

import (
	"errors"
	"testing"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/quota"
)

func TestTake(t *testing.T) {
	l, err := quota.New(quota.Limits{Rate: 10, Burst: 5}, 2)
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
	if !errors.As(err, &ex) || !errors.Is(err, breachd.ErrQuotaExceeded) || ex.RetryAfter() <= 0 || ex.RetryAfter() > 150*time.Millisecond {
		t.Fatalf("call past the burst = %v, want ExceededError with a retry of about 100ms", err)
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
	time.Sleep(ex.RetryAfter())
	if err := l.Take("a", quota.Limits{}, 1); err != nil {
		t.Fatalf("after waiting as told = %v", err)
	}
}

func TestStreams(t *testing.T) {
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
