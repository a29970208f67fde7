// Package decisions records authorization decisions in the record store.
//
// Decisions go from each node straight to the record store, not through
// the Raft journal: they are many (one per requested ID, allow or deny,
// and one per refused call), they are not part of the issuance hash
// chain, and a store outage must never block issuance. So Decide hands
// each decision to an in-memory queue (never blocking), and Run writes
// batches; while the store
// is down the queue holds up to Config.Buffer decisions, and beyond that
// they are dropped and counted (tier0_audit_decisions_dropped_total). When
// Run's context ends it writes what is pending once more, so a clean
// shutdown loses nothing: the server closes the store only after Run has
// returned.
package decisions

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tier0-ca/tier0/storage"
)

// Modes of a Policy.
const (
	All    = "all"    // every decision
	Deny   = "deny"   // denials only
	Sample = "sample" // every denial and Rate of the allows
	Off    = "off"    // none
)

// Policy says which decisions are recorded.
type Policy struct {
	Mode string  // All (default), Deny, Sample or Off
	Rate float64 // Sample: the fraction of allows recorded, in (0, 1]
}

// ParsePolicy reads the --decisions syntax: all, deny, sample:RATE or off.
func ParsePolicy(s string) (Policy, error) {
	switch {
	case s == All || s == Deny || s == Off:
		return Policy{Mode: s, Rate: 1}, nil
	case strings.HasPrefix(s, Sample+":"):
		r, err := strconv.ParseFloat(strings.TrimPrefix(s, Sample+":"), 64)
		if err != nil || !(r > 0 && r <= 1) {
			return Policy{}, fmt.Errorf("--decisions %q: the sample rate must be a number in (0, 1], e.g. sample:0.01", s)
		}
		return Policy{Mode: Sample, Rate: r}, nil
	}
	return Policy{}, fmt.Errorf("--decisions %q: want all, deny, sample:RATE or off", s)
}

// Validate checks the mode and, for Sample, the rate.
func (p Policy) Validate() error {
	switch p.Mode {
	case All, Deny, Off:
		return nil
	case Sample:
		if !(p.Rate > 0 && p.Rate <= 1) {
			return fmt.Errorf("decisions: sample rate %v outside (0, 1]", p.Rate)
		}
		return nil
	}
	return fmt.Errorf("decisions: unknown mode %q", p.Mode)
}

// Store is where decisions go (implemented by storage.AuditStore).
type Store interface {
	AppendDecisions(ctx context.Context, ds []storage.Decision) error
}

// Defaults for Config.
const (
	DefaultBuffer   = 100_000
	DefaultInterval = 200 * time.Millisecond
	wakeAt          = 1000 // pending decisions that trigger a write before the interval
	maxBatch        = 5000 // decisions per AppendDecisions
)

// Config configures a Log.
type Config struct {
	Policy     Policy
	NodeID     string        // recorded with each decision
	Buffer     int           // decisions held while the store is unreachable; default DefaultBuffer
	Interval   time.Duration // how often pending decisions are written; default DefaultInterval
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Log queues decisions and writes them to a Store.
type Log struct {
	cfg               Config
	log               *slog.Logger
	recorded, dropped prometheus.Counter
	wake              chan struct{}

	mu       sync.Mutex
	pending  []storage.Decision
	inFlight int // pending[:inFlight] is being written by Flush (read-only)
}

// New fills defaults, validates the policy and registers the metrics.
func New(cfg Config) (*Log, error) {
	if cfg.Policy.Mode == "" {
		cfg.Policy = Policy{Mode: All, Rate: 1}
	}
	if err := cfg.Policy.Validate(); err != nil {
		return nil, err
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = DefaultBuffer
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &Log{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1),
		recorded: prometheus.NewCounter(prometheus.CounterOpts{Name: "tier0_audit_decisions_recorded_total",
			Help: "Authorization decisions written to the record store."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "tier0_audit_decisions_dropped_total",
			Help: "Authorization decisions dropped because the record store was unreachable for too long (--decisions-buffer)."}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(d.recorded, d.dropped)
	}
	return d, nil
}

// enqueue adds dec to the pending batch (dropped and counted when full).
func (d *Log) enqueue(dec storage.Decision) {
	d.mu.Lock()
	if len(d.pending) >= d.cfg.Buffer {
		d.mu.Unlock()
		d.dropped.Inc()
		return
	}
	d.pending = append(d.pending, dec)
	n := len(d.pending)
	d.mu.Unlock()
	if n >= wakeAt {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// Pending returns how many decisions wait to be written.
func (d *Log) Pending() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pending)
}

// Run writes pending decisions every Interval (or at 1000 pending) until
// ctx ends, then writes what is pending once more (for at most 2 s) and
// returns. Store errors are logged (once per outage), never returned.
func (d *Log) Run(ctx context.Context, store Store) error {
	t := time.NewTicker(d.cfg.Interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if err := d.Flush(fctx, store); err != nil {
				d.log.Error("decisions: final write failed; decisions lost", "pending", d.Pending(), "err", err)
			}
			return nil
		case <-t.C:
		case <-d.wake:
		}
		err := d.Flush(ctx, store)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			failing = true
			d.log.Error("record store unreachable: authorization decisions are held in memory (issuance continues)", "err", err)
		case err == nil && failing:
			failing = false
			d.log.Info("record store reachable again: decisions written")
		}
	}
}

// Flush writes every pending decision, in batches of at most 5000.
func (d *Log) Flush(ctx context.Context, store Store) error {
	for {
		d.mu.Lock()
		n := min(len(d.pending), maxBatch)
		batch := d.pending[:n:n]
		d.inFlight = n
		d.mu.Unlock()
		if n == 0 {
			return nil
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := store.AppendDecisions(wctx, batch)
		cancel()
		if err != nil {
			d.mu.Lock()
			d.inFlight = 0
			d.mu.Unlock()
			return fmt.Errorf("decisions: %w", err)
		}
		d.recorded.Add(float64(n))
		d.mu.Lock()
		d.pending = append([]storage.Decision(nil), d.pending[n:]...)
		d.inFlight = 0
		d.mu.Unlock()
	}
}
