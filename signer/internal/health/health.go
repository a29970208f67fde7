// Package health is the circuit breaker, recovery prober, health report,
// rate-limited logging and health metrics shared by the signer backends
// that can fail (pkcs11, awskms, gcpkms).
//
// Closed, a Breaker lets every call through and counts consecutive
// availability failures; Threshold of them open it. Open, every call fails
// at once with an *errs.UnavailableError whose RetryAfter is the time to
// the next probe, and a background goroutine runs Config.Probe (a real
// signature, re-initialising the module or waiting for the connection as
// the backend needs) with backoff from ProbeMin to ProbeMax until one
// succeeds; then the breaker closes. Recovery therefore needs no traffic:
// a node whose readiness says "signer unavailable" gets no requests, and
// still comes back by itself.
//
// Logs: one line when the breaker opens (with the full cause), one every
// Report while it stays open (with the number of refused calls), one when
// it closes; throttling likewise. Never one line per call.
package health

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tier0-ca/tier0/internal/backoff"
	"github.com/tier0-ca/tier0/signer/internal/errs"
)

// State is a signer's health.
type State int

// States: Up signs; Degraded signs but recently failed or was throttled;
// Down cannot sign (the breaker is open).
const (
	Up State = iota
	Degraded
	Down
)

func (s State) String() string {
	switch s {
	case Up:
		return "up"
	case Degraded:
		return "degraded"
	case Down:
		return "down"
	}
	return "unknown"
}

// Health is a signer's health report.
type Health struct {
	State State
	// Since is when the signer entered State.
	Since time.Time
	// LastError is the most recent availability error (full detail, for
	// operators and logs; nil when Up).
	LastError error
	// RetryAt is, while Down, when the next probe runs (a call may succeed
	// after it); zero otherwise.
	RetryAt time.Time
	// Failures counts consecutive failed calls (Degraded) or probes (Down).
	Failures int
}

// Config configures a Breaker. Zero values get the documented defaults.
type Config struct {
	Backend string // metric label and log attribute, e.g. "pkcs11"
	Key     string // key ID: metric label and log attribute
	// Threshold consecutive availability failures open the breaker
	// (default 5).
	Threshold int
	// ProbeMin and ProbeMax bound the backoff between recovery probes
	// while open (defaults 250ms and 2s); ProbeTimeout bounds one probe
	// (default 5s).
	ProbeMin, ProbeMax, ProbeTimeout time.Duration
	// Probe tests whether the key signs again, repairing what it can
	// (sessions, module, connection) first. Required.
	Probe func(ctx context.Context) error
	// Report is how often a summary line is logged while the breaker stays
	// open or the KMS keeps throttling (default 30s).
	Report  time.Duration
	Logger  *slog.Logger
	Metrics *Metrics
	Now     func() time.Time // tests; default time.Now
}

// degradedHold is how long a throttled call keeps the health Degraded.
const degradedHold = 10 * time.Second

// Breaker is a signer's circuit breaker and health.
type Breaker struct {
	cfg       Config
	log       *slog.Logger
	openGauge prometheus.Gauge
	upGauge   prometheus.Gauge

	// isOpen and failing mirror open and failures > 0 (written under mu)
	// for the lock-free fast paths of Allow and Success, once per sign.
	isOpen, failing atomic.Bool

	mu          sync.Mutex
	open        bool
	failures    int       // consecutive failed calls (closed) or probes (open)
	firstFail   time.Time // start of the current failure run
	lastErr     error
	since       time.Time // when the breaker last opened or closed
	nextProbe   time.Time
	interval    time.Duration
	refused     int // calls refused since the last report
	refusedAll  int // calls refused since the breaker opened
	lastReport  time.Time
	throttleEnd time.Time // Degraded until then
	throttleLog time.Time // last throttling log line
	throttled   int       // throttled calls since that line
	stop        context.CancelFunc
	stopped     bool
	wg          sync.WaitGroup
}

// New fills defaults and returns a closed breaker.
func New(cfg Config) *Breaker {
	if cfg.Threshold <= 0 {
		cfg.Threshold = 5
	}
	if cfg.ProbeMin <= 0 {
		cfg.ProbeMin = 250 * time.Millisecond
	}
	if cfg.ProbeMax < cfg.ProbeMin {
		cfg.ProbeMax = max(2*time.Second, cfg.ProbeMin)
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = 5 * time.Second
	}
	if cfg.Report <= 0 {
		cfg.Report = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	b := &Breaker{
		cfg:       cfg,
		log:       cfg.Logger.With("backend", cfg.Backend, "key", cfg.Key),
		openGauge: cfg.Metrics.CircuitOpen.WithLabelValues(cfg.Backend, cfg.Key),
		upGauge:   cfg.Metrics.Up.WithLabelValues(cfg.Backend, cfg.Key),
		since:     cfg.Now(),
		interval:  cfg.ProbeMin,
	}
	b.openGauge.Set(0)
	b.upGauge.Set(1)
	return b
}

// Allow returns nil when a call may go ahead, or an *errs.UnavailableError
// (reason circuit_open) while the breaker is open.
func (b *Breaker) Allow() error {
	if !b.isOpen.Load() {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return nil
	}
	b.refused++
	b.refusedAll++
	return b.unavailableLocked(errs.ReasonCircuitOpen, b.lastErr)
}

// Success records a call the backend answered (the key signed, or the KMS
// answered with a non-availability error).
func (b *Breaker) Success() {
	if !b.failing.Load() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		b.failures, b.lastErr = 0, nil
		b.failing.Store(false)
	}
	// While open, only a probe closes the breaker: a call admitted before
	// it opened says little about now.
}

// Failure records an availability failure (reason: unavailable or
// timeout). Threshold consecutive failures open the breaker and start the
// prober.
func (b *Breaker) Failure(reason string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.cfg.Now()
	b.lastErr = err
	if b.open {
		return
	}
	if b.failures == 0 {
		b.firstFail = now
	}
	b.failures++
	b.failing.Store(true)
	if b.failures < b.cfg.Threshold {
		b.log.Debug("signer: sign failed", "reason", reason, "consecutive_failures", b.failures, "err", err)
		return
	}
	b.openLocked(now, reason, err)
}

// Unavailable returns err as an *errs.UnavailableError for reason, with
// the breaker's retry-after hint; it records nothing.
func (b *Breaker) Unavailable(reason string, err error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.unavailableLocked(reason, err)
}

// Throttled records a call the KMS kept throttling and returns it as an
// *errs.UnavailableError with retryAfter. Throttling never opens the
// breaker (the KMS is up); it makes the health Degraded for a while.
func (b *Breaker) Throttled(err error, retryAfter time.Duration) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.cfg.Now()
	if !now.Before(b.throttleEnd) {
		b.throttleLog = time.Time{} // a new throttling episode: log at once
	}
	b.throttleEnd = now.Add(degradedHold)
	b.throttled++
	if now.Sub(b.throttleLog) >= b.cfg.Report {
		b.log.Warn("signer: KMS throttling; signs fail with a retry-after hint (raise the quota or lower --signer-rate-limit)",
			"throttled_calls", b.throttled, "retry_after", retryAfter, "err", err)
		b.throttleLog, b.throttled = now, 0
	}
	return &errs.UnavailableError{Backend: b.cfg.Backend, Reason: errs.ReasonThrottled, RetryAfter: retryAfter, Err: err}
}

// Health reports the current health.
func (b *Breaker) Health() Health {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.cfg.Now()
	switch {
	case b.open:
		return Health{State: Down, Since: b.since, LastError: b.lastErr, RetryAt: b.nextProbe, Failures: b.failures}
	case b.failures > 0:
		return Health{State: Degraded, Since: b.firstFail, LastError: b.lastErr, Failures: b.failures}
	case now.Before(b.throttleEnd):
		return Health{State: Degraded, Since: b.throttleEnd.Add(-degradedHold), LastError: errs.ErrThrottled}
	}
	return Health{State: Up, Since: b.since}
}

// Stop ends the prober (waiting for a running probe) and removes the
// health series of this key. Later failures do not start a new prober.
func (b *Breaker) Stop() {
	b.mu.Lock()
	b.stopped = true
	if b.stop != nil {
		b.stop()
	}
	b.mu.Unlock()
	b.wg.Wait()
	b.cfg.Metrics.CircuitOpen.DeleteLabelValues(b.cfg.Backend, b.cfg.Key)
	b.cfg.Metrics.Up.DeleteLabelValues(b.cfg.Backend, b.cfg.Key)
}

func (b *Breaker) unavailableLocked(reason string, err error) *errs.UnavailableError {
	d := b.cfg.ProbeMin
	if b.open {
		d = max(b.nextProbe.Sub(b.cfg.Now()), b.interval)
	}
	return &errs.UnavailableError{Backend: b.cfg.Backend, Reason: reason, RetryAfter: d, Err: err}
}

func (b *Breaker) openLocked(now time.Time, reason string, err error) {
	b.open, b.since, b.failures = true, now, 0
	b.isOpen.Store(true)
	b.interval = b.cfg.ProbeMin
	b.nextProbe = now.Add(b.interval)
	b.refused, b.refusedAll, b.lastReport = 0, 0, now
	b.openGauge.Set(1)
	b.upGauge.Set(0)
	b.log.Warn("signer: CA key unavailable; failing signs fast and probing for recovery",
		"reason", reason, "failed_since", b.firstFail, "err", err)
	if b.stopped {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.stop = cancel
	b.wg.Add(1)
	go b.probeLoop(ctx)
}

// probeLoop probes until the key signs again or Stop.
func (b *Breaker) probeLoop(ctx context.Context) {
	defer b.wg.Done()
	for {
		b.mu.Lock()
		wait := b.nextProbe.Sub(b.cfg.Now())
		b.mu.Unlock()
		if backoff.Sleep(ctx, wait) != nil {
			return
		}
		pctx, cancel := context.WithTimeout(ctx, b.cfg.ProbeTimeout)
		err := b.cfg.Probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			b.close()
			return
		}
		b.probeFailed(err)
	}
}

func (b *Breaker) probeFailed(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.cfg.Now()
	b.failures++
	b.lastErr = err
	b.interval = min(2*b.interval, b.cfg.ProbeMax)
	b.nextProbe = now.Add(b.interval)
	if now.Sub(b.lastReport) >= b.cfg.Report {
		b.log.Warn("signer: CA key still unavailable", "down_for", now.Sub(b.since).Round(time.Millisecond),
			"refused_calls", b.refused, "failed_probes", b.failures, "err", err)
		b.lastReport, b.refused = now, 0
	}
}

func (b *Breaker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.cfg.Now()
	b.log.Info("signer: CA key available again", "down_for", now.Sub(b.since).Round(time.Millisecond),
		"refused_calls", b.refusedAll, "failed_probes", b.failures)
	b.open, b.since, b.failures, b.lastErr = false, now, 0, nil
	b.isOpen.Store(false)
	b.failing.Store(false)
	b.nextProbe, b.stop = time.Time{}, nil
	b.openGauge.Set(0)
	b.upGauge.Set(1)
}
