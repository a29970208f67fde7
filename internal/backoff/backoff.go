// Package backoff holds the two helpers every retry loop in tier0 uses:
// a context-aware sleep and a uniform jitter.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Sleep waits d, or until ctx ends (then it returns ctx.Err()).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Jitter scales d by a uniform factor in [1-frac, 1+frac).
func Jitter(d time.Duration, frac float64) time.Duration {
	return Scale(d, frac, rand.Float64())
}

// Scale is Jitter with the uniform sample u in [0, 1) given (for callers
// with their own source of randomness, e.g. tests).
func Scale(d time.Duration, frac, u float64) time.Duration {
	return time.Duration(float64(d) * (1 - frac + 2*frac*u))
}
