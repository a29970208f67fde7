// Package kmsctl is the throughput control shared by the KMS backends: a
// client-side rate limit, retries with full-jitter exponential backoff on
// throttling and unavailability, a per-call timeout, and a circuit breaker so
// a dead KMS fails fast.
package kmsctl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"golang.org/x/time/rate"

	"github.com/tier0-ca/tier0/internal/backoff"
	"github.com/tier0-ca/tier0/signer/internal/errs"
)

// Class is how a backend classifies the error of one attempt.
type Class int

const (
	// Permanent errors are returned at once (bad request, bad key, ...).
	Permanent Class = iota
	// Throttled errors are retried; they do not count against the breaker.
	Throttled
	// Unavailable errors (5xx, connection refused, unavailable, timeouts)
	// are retried and count against the breaker.
	Unavailable
	// Corrupt responses (checksum mismatches) are retried; the KMS answered,
	// so they do not count against the breaker.
	Corrupt
)

// Config configures a Controller. Zero values get the documented defaults.
type Config struct {
	Backend    string        // metric label and log attribute, e.g. "awskms"
	Rate       float64       // attempts per second; <= 0 means unlimited
	Burst      int           // default max(1, Rate/10)
	MaxRetries int           // retries after the first attempt; default 4, < 0 means none
	Timeout    time.Duration // whole call, retries included; default 5s
	// BackoffBase and BackoffMax bound the full-jitter retry backoff
	// (defaults 25ms and 1s).
	BackoffBase, BackoffMax time.Duration
	// BreakerThreshold consecutive Unavailable attempts open the circuit
	// (default 5). It stays open for BreakerMin (default 2s), doubling after
	// every failed half-open probe up to BreakerMax (default 30s).
	BreakerThreshold       int
	BreakerMin, BreakerMax time.Duration
	Classify               func(error) Class
	Logger                 *slog.Logger
	Metrics                *Metrics
}

// Controller runs KMS calls under the rate limit, retry policy and breaker.
type Controller struct {
	cfg     Config
	limiter *rate.Limiter
	breaker *breaker
}

// New fills defaults and returns a Controller.
func New(cfg Config) *Controller {
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 4
	}
	if cfg.MaxRetries < 0 {
		cfg.MaxRetries = 0
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = 25 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = time.Second
	}
	if cfg.BreakerThreshold <= 0 {
		cfg.BreakerThreshold = 5
	}
	if cfg.BreakerMin <= 0 {
		cfg.BreakerMin = 2 * time.Second
	}
	if cfg.BreakerMax < cfg.BreakerMin {
		cfg.BreakerMax = max(30*time.Second, cfg.BreakerMin)
	}
	if cfg.Classify == nil {
		cfg.Classify = func(error) Class { return Permanent }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	lim := rate.NewLimiter(rate.Inf, 0)
	if cfg.Rate > 0 {
		if cfg.Burst <= 0 {
			cfg.Burst = max(1, int(cfg.Rate/10))
		}
		lim = rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Burst)
	}
	c := &Controller{cfg: cfg, limiter: lim}
	c.breaker = &breaker{
		threshold: cfg.BreakerThreshold,
		min:       cfg.BreakerMin,
		max:       cfg.BreakerMax,
		backoff:   cfg.BreakerMin,
		gauge:     cfg.Metrics.CircuitOpen.WithLabelValues(cfg.Backend),
		log:       cfg.Logger.With("backend", cfg.Backend),
	}
	c.breaker.gauge.Set(0)
	return c
}

// Do runs fn until it succeeds, fails permanently, runs out of retries or
// the call's deadline (Timeout, or ctx's if sooner) passes.
func (c *Controller) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	retries := c.cfg.Metrics.Retries.WithLabelValues(c.cfg.Backend)
	var last error
	for attempt := 0; ; attempt++ {
		if err := c.breaker.allow(); err != nil {
			if last != nil {
				return fmt.Errorf("%w (last error: %v)", err, last) //nolint:errorlint // the sentinel classifies; the last error is detail
			}
			return err
		}
		if err := c.limiter.Wait(ctx); err != nil {
			c.breaker.release()
			return c.ctxErr(ctx, last)
		}
		err := fn(ctx)
		if err == nil {
			c.breaker.record(Permanent)
			return nil
		}
		class := c.cfg.Classify(err)
		if ctx.Err() != nil {
			// The attempt ran into the deadline: a hanging KMS counts as
			// unavailable, a caller's cancellation does not.
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				c.breaker.record(Unavailable)
			} else {
				c.breaker.release()
			}
			return c.ctxErr(ctx, err)
		}
		c.breaker.record(class)
		last = err
		switch {
		case class == Permanent:
			return err
		case attempt >= c.cfg.MaxRetries && class == Throttled:
			return fmt.Errorf("%w after %d attempts: %w", errs.ErrThrottled, attempt+1, err)
		case attempt >= c.cfg.MaxRetries:
			return fmt.Errorf("%w after %d attempts: %w", errs.ErrKMS, attempt+1, err)
		}
		retries.Inc()
		c.cfg.Logger.Debug("signer: retrying kms call", "backend", c.cfg.Backend, "attempt", attempt+1, "err", err)
		if err := backoff.Sleep(ctx, c.backoff(attempt)); err != nil {
			return c.ctxErr(ctx, last)
		}
	}
}

func (c *Controller) ctxErr(ctx context.Context, last error) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w (limit %s): %w", errs.ErrTimeout, c.cfg.Timeout, err)
	}
	if last != nil && !errors.Is(last, context.DeadlineExceeded) && !errors.Is(last, context.Canceled) {
		return fmt.Errorf("%w (last error: %v)", err, last) //nolint:errorlint // the sentinel classifies; the last error is detail
	}
	return err
}

// backoff is "full jitter": uniform in [0, min(max, base*2^attempt)].
func (c *Controller) backoff(attempt int) time.Duration {
	d := c.cfg.BackoffMax
	if attempt < 30 {
		d = min(c.cfg.BackoffBase<<attempt, c.cfg.BackoffMax)
	}
	return time.Duration(rand.Int64N(int64(d) + 1))
}
