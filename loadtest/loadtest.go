// Package loadtest is tier0's renewal-storm generator. It simulates a fleet
// of identity agents (real agent SVIDs from join tokens, one mTLS
// connection each) renewing their workloads' X509-SVIDs in batches through
// Agent.MintX509SVIDs, paced open loop so that latency counts from when a
// renewal was due rather than when the generator got round to sending it
// (no coordinated omission, as in tsenart/vegeta's pacer).
//
// Scenarios:
//   - steady: every SVID renewed at half its lifetime +-10%, with time
//     compressed so a run lasts seconds to minutes;
//   - storm: every SVID of the fleet due at once; reports the drain time;
//   - ramp: a rising rate until p99 or errors pass a limit; reports the knee,
//     then goodput when offered a multiple of the peak;
//   - failover: steady against a list of addresses while nodes die;
//     reports the longest gap between successful issuances.
//
// Refused attempts are retried: ResourceExhausted after the server's
// retry-after hint with jitter (the agent's client holds all its calls to
// that server meanwhile), Unavailable with a jittered backoff. A
// sample of the SVIDs is checked with go-spiffe's x509svid.Verify.
package loadtest

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/tier0-ca/tier0/internal/backoff"
)

// Scenarios.
const (
	Steady   = "steady"
	Storm    = "storm"
	Ramp     = "ramp"
	Failover = "failover"
)

// Config is one run. New fills defaults; zero values mean the defaults.
type Config struct {
	Scenario string
	Fleet    *Fleet

	// Duration: steady and failover run this long; storm and ramp give up
	// after it. Default 30s.
	Duration time.Duration
	// TTL is the lifetime of the SVIDs (the fleet's entry TTL). Default 1h.
	TTL time.Duration
	// Compression divides lifetimes and agent ticks (steady, failover), so
	// that an hour of renewals passes in Duration. Default 1.
	Compression float64
	// Rate, when set, picks Compression so that steady offers Rate SVIDs/s.
	Rate float64
	// Sync is the agents' renewal tick before compression. Default 5s.
	Sync time.Duration
	// Spread: in a storm the agents notice within this window. Default 0.
	Spread time.Duration
	// MaxBatch caps the items per call: the server's batch limit. Default 256.
	MaxBatch int
	// Deadline bounds a call (retries included) from its intended time.
	// Default 60s. AttemptTimeout bounds one attempt. Default 30s.
	Deadline       time.Duration
	AttemptTimeout time.Duration
	// VerifyRate is the fraction of SVIDs verified. Default 0.01; negative
	// means none.
	VerifyRate float64
	// CollectSerials keeps the serial of every SVID issued (for tests that
	// match them against the record store).
	CollectSerials bool

	// Ramp: SVIDs/s of the first step and the increase per step, the step
	// length, limits, and the overload phase (Overload x peak goodput for
	// OverloadDuration; 0 skips it).
	Batch            int // items per ramp call. Default 10.
	StartRate        float64
	StepRate         float64
	StepDuration     time.Duration
	MaxSteps         int
	P99Limit         time.Duration
	ErrorLimit       float64
	Overload         float64
	OverloadDuration time.Duration
	MaxOutstanding   int64

	// Events run at offsets from the start (failover: kill a node, restart
	// it); each outcome is reported.
	Events []Event

	// Progress receives a progress bar (TTY) or a line every few seconds.
	Progress    io.Writer
	ProgressTTY bool
}

func (c *Config) fill() error {
	switch c.Scenario {
	case Steady, Storm, Ramp, Failover:
	default:
		return fmt.Errorf("loadtest: unknown scenario %q (steady, storm, ramp, failover)", c.Scenario)
	}
	if c.Fleet == nil || len(c.Fleet.Agents) == 0 {
		return fmt.Errorf("loadtest: no fleet")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Duration, 30*time.Second)
	def(&c.TTL, time.Hour)
	def(&c.Sync, 5*time.Second)
	def(&c.Deadline, 60*time.Second)
	def(&c.AttemptTimeout, 30*time.Second)
	def(&c.StepDuration, 3*time.Second)
	def(&c.P99Limit, 500*time.Millisecond)
	def(&c.OverloadDuration, 10*time.Second)
	if c.Compression <= 0 {
		c.Compression = 1
	}
	if c.Rate > 0 {
		// n SVIDs each renewed every TTL/2 (in run time TTL/2/C).
		c.Compression = c.Rate * c.TTL.Seconds() / 2 / float64(c.Fleet.Size())
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 256
	}
	if c.VerifyRate == 0 {
		c.VerifyRate = 0.01
	}
	if c.Batch <= 0 {
		c.Batch = 10
	}
	if c.StartRate <= 0 {
		c.StartRate = 1000
	}
	if c.StepRate <= 0 {
		c.StepRate = c.StartRate
	}
	if c.MaxSteps <= 0 {
		c.MaxSteps = 30
	}
	if c.ErrorLimit <= 0 {
		c.ErrorLimit = 0.01
	}
	if c.MaxOutstanding <= 0 {
		c.MaxOutstanding = 50000
	}
	return nil
}

// Event is an action at an offset from the start of a run.
type Event struct {
	At   time.Duration
	Name string
	Do   func(ctx context.Context) error
}

// EventResult is when an Event ran and how it ended.
type EventResult struct {
	Name  string  `json:"name"`
	AtSec float64 `json:"at_sec"`
	Error string  `json:"error,omitempty"`
}

type events struct {
	wg  sync.WaitGroup
	mu  sync.Mutex
	out []EventResult
}

func startEvents(ctx context.Context, start time.Time, evs []Event) *events {
	e := &events{}
	for _, ev := range evs {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			if backoff.Sleep(ctx, time.Until(start.Add(ev.At))) != nil {
				return
			}
			r := EventResult{Name: ev.Name, AtSec: time.Since(start).Seconds()}
			if err := ev.Do(ctx); err != nil {
				r.Error = err.Error()
			}
			e.mu.Lock()
			e.out = append(e.out, r)
			e.mu.Unlock()
		}()
	}
	return e
}

func (e *events) wait() []EventResult {
	e.wg.Wait()
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.out
}

// Run runs one scenario against the fleet's server(s) and returns its result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	rec := NewRecorder(time.Now())
	send := &sender{rec: rec, bundle: cfg.Fleet.Bundle, deadline: cfg.Deadline,
		attemptTimeout: cfg.AttemptTimeout, verifyRate: cfg.VerifyRate, collectSerials: cfg.CollectSerials}
	total := int64(0)
	if cfg.Scenario == Storm {
		total = int64(cfg.Fleet.Size())
	}
	evCtx, cancelEvents := context.WithCancel(ctx)
	defer cancelEvents()
	evs := startEvents(evCtx, rec.start, cfg.Events)
	bundleDone := make(chan struct{})
	go func() { defer close(bundleDone); cfg.Fleet.followBundle(evCtx) }() // bundle.go
	defer func() { cancelEvents(); <-bundleDone }()
	stopProgress := startProgress(cfg.Progress, cfg.ProgressTTY, cfg.Scenario, rec, total)
	var rampRes *RampResult
	switch cfg.Scenario {
	case Steady, Storm, Failover:
		c := cfg.Compression
		if cfg.Scenario == Storm {
			c = 1
		}
		r := &renewal{fleet: cfg.Fleet, send: send, storm: cfg.Scenario == Storm,
			ttl:      time.Duration(float64(cfg.TTL) / c),
			sync:     max(time.Duration(float64(cfg.Sync)/c), 5*time.Millisecond),
			maxBatch: cfg.MaxBatch, duration: cfg.Duration, spread: cfg.Spread}
		if cfg.Scenario == Storm {
			// A storm's retries of failed items come at a short tick.
			r.sync = 100 * time.Millisecond
		}
		r.run(ctx)
	case Ramp:
		r := &ramp{fleet: cfg.Fleet, send: send, batch: cfg.Batch, startRate: cfg.StartRate,
			stepRate: cfg.StepRate, stepDur: cfg.StepDuration, maxSteps: cfg.MaxSteps,
			p99Limit: cfg.P99Limit, errLimit: cfg.ErrorLimit, overload: cfg.Overload,
			overloadDur: cfg.OverloadDuration, maxOutstanding: cfg.MaxOutstanding, notAfterIn: cfg.TTL / 2}
		res := r.run(ctx)
		rampRes = &res
	}
	end := time.Now()
	stopProgress()
	res := buildResult(cfg, rec, end)
	res.Ramp = rampRes
	cancelEvents() // events not yet due when the run ends are skipped
	res.Events = evs.wait()
	return res, ctx.Err()
}
