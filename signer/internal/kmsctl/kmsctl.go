// Package kmsctl is the throughput control shared by the KMS backends: a
// client-side rate limit, retries with full-jitter exponential backoff on
// throttling and unavailability, a per-call timeout, and a circuit breaker
// with a recovery prober (signer/internal/health) so a dead KMS fails fast
// and is noticed again as soon as it answers.
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
	"github.com/tier0-ca/tier0/signer/internal/health"
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
	Key        string        // key ID for the health metrics and logs (set by the backend)
	Rate       float64       // attempts per second; <= 0 means unlimited
	Burst      int           // default max(1, Rate/10)
	MaxRetries int           // retries after the first attempt; default 4, < 0 means none
	Timeout    time.Duration // whole call, retries included; default 5s
	// BackoffBase and BackoffMax bound the full-jitter retry backoff
	// (defaults 25ms and 1s).
	BackoffBase, BackoffMax time.Duration
	// BreakerThreshold consecutive Unavailable attempts open the circuit
	// (default 5). While it is open, calls fail at once and Probe runs in
	// the background every ProbeMin (default 250ms) doubling up to
	// ProbeMax (default 2s) until it succeeds, which closes the circuit.
	BreakerThreshold   int
	ProbeMin, ProbeMax time.Duration
	// Probe is one attempt to sign (set by the backend); its error is
	// classified like a call's: only Unavailable keeps the circuit open.
	Probe    func(ctx context.Context) error
	Classify func(error) Class
	Logger   *slog.Logger
	Metrics  *health.Metrics
}

// Controller runs KMS calls under the rate limit, retry policy and breaker.
type Controller struct {
	cfg     Config
	limiter *rate.Limiter
	breaker *health.Breaker
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
	if cfg.Classify == nil {
		cfg.Classify = func(error) Class { return Permanent }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = health.NewMetrics(nil)
	}
	lim := rate.NewLimiter(rate.Inf, 0)
	if cfg.Rate > 0 {
		if cfg.Burst <= 0 {
			cfg.Burst = max(1, int(cfg.Rate/10))
		}
		lim = rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Burst)
	}
	c := &Controller{cfg: cfg, limiter: lim}
	c.breaker = health.New(health.Config{
		Backend:   cfg.Backend,
		Key:       cfg.Key,
		Threshold: cfg.BreakerThreshold,
		ProbeMin:  cfg.ProbeMin,
		ProbeMax:  cfg.ProbeMax,
		// The probe waits as long as one call may.
		ProbeTimeout: cfg.Timeout,
		Probe:        c.probe,
		Logger:       cfg.Logger,
		Metrics:      cfg.Metrics,
	})
	return c
}

// probe runs cfg.Probe once under the rate limit: nil when the KMS
// answered (a throttled or refused sign still proves it is up).
func (c *Controller) probe(ctx context.Context) error {
	if c.cfg.Probe == nil {
		return nil
	}
	if err := c.limiter.Wait(ctx); err != nil {
		return err
	}
	if err := c.cfg.Probe(ctx); err != nil && (c.cfg.Classify(err) == Unavailable || ctx.Err() != nil) {
		return err
	}
	return nil
}

// Health reports the KMS's health as this controller sees it.
func (c *Controller) Health() health.Health { return c.breaker.Health() }

// Stop ends the recovery prober; the Controller must not be used after.
func (c *Controller) Stop() { c.breaker.Stop() }

// Do runs fn until it succeeds, fails permanently, runs out of retries or
// the call's deadline (Timeout, or ctx's if sooner) passes. Every failure
// that says the KMS cannot sign now (throttled, unavailable, timed out,
// corrupt responses, circuit open) is an *errs.UnavailableError with a
// retry-after hint; permanent errors are returned as they are.
func (c *Controller) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	retries := c.cfg.Metrics.Retries.WithLabelValues(c.cfg.Backend)
	var last error
	for attempt := 0; ; attempt++ {
		if err := c.breaker.Allow(); err != nil {
			return err
		}
		if err := c.limiter.Wait(ctx); err != nil {
			if ctx.Err() == nil { // the wait would pass the deadline
				return c.breaker.Unavailable(errs.ReasonThrottled,
					fmt.Errorf("%w: client-side rate limit (--signer-rate-limit): %w", errs.ErrThrottled, err))
			}
			return c.ctxErr(ctx, last)
		}
		err := fn(ctx)
		if err == nil {
			c.breaker.Success()
			return nil
		}
		class := c.cfg.Classify(err)
		if ctx.Err() != nil {
			return c.ctxErr(ctx, err)
		}
		last = err
		if class == Unavailable {
			c.breaker.Failure(errs.ReasonUnavailable, err)
		} else {
			c.breaker.Success() // the KMS answered
		}
		switch {
		case class == Permanent:
			return err
		case attempt >= c.cfg.MaxRetries && class == Throttled:
			return c.breaker.Throttled(fmt.Errorf("%w after %d attempts: %w", errs.ErrThrottled, attempt+1, err), c.backoffCap(attempt+1))
		case attempt >= c.cfg.MaxRetries:
			return c.breaker.Unavailable(errs.ReasonUnavailable, fmt.Errorf("%w after %d attempts: %w", errs.ErrKMS, attempt+1, err))
		}
		retries.Inc()
		c.cfg.Logger.Debug("signer: retrying kms call", "backend", c.cfg.Backend, "attempt", attempt+1, "err", err)
		if err := backoff.Sleep(ctx, c.backoff(attempt)); err != nil {
			return c.ctxErr(ctx, last)
		}
	}
}

// ctxErr is the error of a call whose context ended: the caller's
// cancellation as it is; the deadline (a hanging KMS) as an unavailable
// timeout, counted against the breaker.
func (c *Controller) ctxErr(ctx context.Context, last error) error {
	err := ctx.Err()
	if !errors.Is(err, context.DeadlineExceeded) {
		if last != nil && !errors.Is(last, context.Canceled) {
			return fmt.Errorf("%w (last error: %v)", err, last) //nolint:errorlint // the context error classifies; the last error is detail
		}
		return err
	}
	err = fmt.Errorf("%w (limit %s): %w", errs.ErrTimeout, c.cfg.Timeout, err)
	if last != nil && !errors.Is(last, context.DeadlineExceeded) && !errors.Is(last, context.Canceled) {
		err = fmt.Errorf("%w (last error: %v)", err, last) //nolint:errorlint // the sentinel classifies; the last error is detail
	}
	c.breaker.Failure(errs.ReasonTimeout, err)
	return c.breaker.Unavailable(errs.ReasonTimeout, err)
}

// backoffCap is the upper bound of the backoff before attempt: the
// retry-after hint of a call that kept being throttled.
func (c *Controller) backoffCap(attempt int) time.Duration {
	if attempt >= 30 {
		return c.cfg.BackoffMax
	}
	return min(c.cfg.BackoffBase<<attempt, c.cfg.BackoffMax)
}

// backoff is "full jitter": uniform in [0, min(max, base*2^attempt)].
func (c *Controller) backoff(attempt int) time.Duration {
	return time.Duration(rand.Int64N(int64(c.backoffCap(attempt)) + 1))
}
