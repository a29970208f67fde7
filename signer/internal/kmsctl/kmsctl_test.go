package kmsctl

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/signer/internal/errs"
)

var (
	errDown     = errors.New("down")
	errThrottle = errors.New("throttle")
	errBad      = errors.New("bad request")
)

func classify(err error) Class {
	switch {
	case errors.Is(err, errDown):
		return Unavailable
	case errors.Is(err, errThrottle):
		return Throttled
	}
	return Permanent
}

func TestBreakerStates(t *testing.T) {
	now := time.Unix(0, 0)
	m := NewMetrics(nil)
	b := &breaker{threshold: 3, min: time.Second, max: 4 * time.Second, backoff: time.Second,
		gauge: m.CircuitOpen.WithLabelValues("t"), log: slog.New(slog.DiscardHandler), now: func() time.Time { return now }}
	fail := func() {
		t.Helper()
		if err := b.allow(); err != nil {
			t.Fatalf("allow: %v", err)
		}
		b.record(Unavailable)
	}
	fail()
	fail()
	b.record(Throttled) // the KMS answered: resets the count
	fail()
	fail()
	fail() // third consecutive: opens
	if err := b.allow(); !errors.Is(err, errs.ErrUnavailable) {
		t.Fatalf("open breaker allowed a call: %v", err)
	}
	now = now.Add(time.Second)
	if err := b.allow(); err != nil { // half-open probe
		t.Fatalf("probe refused: %v", err)
	}
	if err := b.allow(); !errors.Is(err, errs.ErrUnavailable) {
		t.Fatal("second call during the probe was allowed")
	}
	b.record(Unavailable) // probe failed: open for 2s
	now = now.Add(1500 * time.Millisecond)
	if err := b.allow(); err == nil {
		t.Fatal("allowed before the doubled backoff")
	}
	now = now.Add(time.Second)
	if err := b.allow(); err != nil {
		t.Fatal(err)
	}
	b.release() // caller gave up: probe slot back
	if err := b.allow(); err != nil {
		t.Fatal(err)
	}
	b.record(Permanent) // probe answered: closed
	for range 2 {
		fail()
	}
	if err := b.allow(); err != nil {
		t.Fatalf("closed breaker refused: %v", err)
	}
}

func TestDoRetries(t *testing.T) {
	c := New(Config{Backend: "t", Classify: classify, BackoffBase: time.Microsecond, MaxRetries: 2})
	calls := 0
	err := c.Do(context.Background(), func(context.Context) error { calls++; return errThrottle })
	if !errors.Is(err, errs.ErrThrottled) || calls != 3 || err.Error() != "signer: kms throttled after 3 attempts: throttle" {
		t.Fatalf("Do = %v after %d calls", err, calls)
	}
	calls = 0
	err = c.Do(context.Background(), func(context.Context) error { calls++; return errBad })
	if !errors.Is(err, errBad) || calls != 1 {
		t.Fatalf("permanent error: %v after %d calls", err, calls)
	}
	calls = 0
	err = c.Do(context.Background(), func(context.Context) error {
		calls++
		if calls < 3 {
			return errDown
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Do = %v after %d calls", err, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Do(ctx, func(context.Context) error { t.Fatal("called"); return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v", err)
	}
}

func TestDoTimeout(t *testing.T) {
	c := New(Config{Backend: "t", Classify: classify, Timeout: 20 * time.Millisecond})
	err := c.Do(context.Background(), func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	if !errors.Is(err, errs.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do = %v, want ErrTimeout", err)
	}
}

func TestBackoffBounds(t *testing.T) {
	c := New(Config{BackoffBase: 10 * time.Millisecond, BackoffMax: 80 * time.Millisecond})
	for attempt := range 40 {
		limit := min(10*time.Millisecond<<min(attempt, 20), 80*time.Millisecond)
		for range 50 {
			if d := c.backoff(attempt); d < 0 || d > limit {
				t.Fatalf("backoff(%d) = %v, want [0, %v]", attempt, d, limit)
			}
		}
	}
}

func TestRateLimit(t *testing.T) {
	c := New(Config{Rate: 100, Burst: 1})
	start := time.Now()
	for range 11 {
		if err := c.Do(context.Background(), func(context.Context) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	// 11 calls at 100/s with a burst of 1 take at least 100ms.
	if el := time.Since(start); el < 90*time.Millisecond {
		t.Fatalf("11 calls at 100/s took %v", el)
	}
}
