package kmsctl

import (
	"context"
	"errors"
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

func TestDoRetries(t *testing.T) {
	c := New(Config{Backend: "t", Classify: classify, BackoffBase: time.Microsecond, MaxRetries: 2})
	calls := 0
	err := c.Do(context.Background(), func(context.Context) error { calls++; return errThrottle })
	var ue *errs.UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, errs.ErrThrottled) || calls != 3 || ue.Reason != errs.ReasonThrottled ||
		ue.RetryAfter != 8*time.Microsecond || err.Error() != "signer: CA key unavailable (t: throttled; retry in 0s): signer: kms throttled after 3 attempts: throttle" {
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
	var ue *errs.UnavailableError
	if !errors.As(err, &ue) || ue.Reason != errs.ReasonTimeout || !errors.Is(err, errs.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do = %v, want an unavailable ErrTimeout", err)
	}
	// The caller's own cancellation is not the KMS's fault.
	ctx, cancel := context.WithCancel(context.Background())
	err = c.Do(ctx, func(ctx context.Context) error { cancel(); <-ctx.Done(); return ctx.Err() })
	if !errors.Is(err, context.Canceled) || errors.As(err, &ue) {
		t.Fatalf("Do canceled = %v, want context.Canceled only", err)
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
