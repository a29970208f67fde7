package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/storage"
)

// Authorization decisions go from each node straight to the record store,
// not through the Raft journal: they are many (one per requested ID, allow
// or deny), they are not part of the issuance hash chain, and a store
// outage must never block issuance. So the authorizer hands each decision
// to an in-memory queue (never blocking), and one goroutine writes batches;
// while the store is down the queue holds up to --decisions-buffer
// decisions, and beyond that they are dropped and counted
// (tier0_audit_decisions_dropped_total). Every decision is also in the log.

const (
	decisionAll    = "all"
	decisionDeny   = "deny"
	decisionSample = "sample"
	decisionOff    = "off"
)

func parseDecisionMode(s string) (mode string, rate float64, err error) {
	switch {
	case s == decisionAll || s == decisionDeny || s == decisionOff:
		return s, 1, nil
	case strings.HasPrefix(s, decisionSample+":"):
		r, err := strconv.ParseFloat(strings.TrimPrefix(s, decisionSample+":"), 64)
		if err != nil || !(r > 0 && r <= 1) {
			return "", 0, fmt.Errorf("--decisions %q: the sample rate must be a number in (0, 1], e.g. sample:0.01", s)
		}
		return decisionSample, r, nil
	}
	return "", 0, fmt.Errorf("--decisions %q: want all, deny, sample:RATE or off", s)
}

type decisionLog struct {
	mode   string
	rate   float64
	nodeID string
	max    int
	log    *slog.Logger

	recorded, dropped prometheus.Counter
	wake              chan struct{}

	mu      sync.Mutex
	pending []storage.Decision
}

func newDecisionLog(mode string, rate float64, nodeID string, max int, log *slog.Logger, reg prometheus.Registerer) *decisionLog {
	d := &decisionLog{mode: mode, rate: rate, nodeID: nodeID, max: max, log: log, wake: make(chan struct{}, 1),
		recorded: prometheus.NewCounter(prometheus.CounterOpts{Name: "tier0_audit_decisions_recorded_total",
			Help: "Authorization decisions written to the record store."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "tier0_audit_decisions_dropped_total",
			Help: "Authorization decisions dropped because the record store was unreachable for too long (--decisions-buffer)."}),
	}
	if d.max <= 0 {
		d.max = 100_000
	}
	if reg != nil {
		reg.MustRegister(d.recorded, d.dropped)
	}
	return d
}

func (d *decisionLog) wrap(next ca.Authorizer) ca.Authorizer {
	if d.mode == decisionOff {
		return next
	}
	return authorizerFunc(func(agent, id spiffeid.ID) (ca.Grant, error) {
		g, err := next.Authorize(agent, id)
		d.add(agent, id, g, err)
		return g, err
	})
}

type authorizerFunc func(agent, id spiffeid.ID) (ca.Grant, error)

func (f authorizerFunc) Authorize(agent, id spiffeid.ID) (ca.Grant, error) { return f(agent, id) }

func (d *decisionLog) add(agent, id spiffeid.ID, g ca.Grant, err error) {
	allowed := err == nil
	switch {
	case allowed && d.mode == decisionDeny:
		return
	case allowed && d.mode == decisionSample && rand.Float64() >= d.rate:
		return
	}
	reason := "entry " + g.EntryID
	if !allowed {
		reason = err.Error()
	}
	dec := storage.Decision{At: time.Now().UTC(), NodeID: d.nodeID, Caller: agent.String(), Requested: id.String(), Allowed: allowed, Reason: reason}
	d.mu.Lock()
	if len(d.pending) >= d.max {
		d.mu.Unlock()
		d.dropped.Inc()
		return
	}
	d.pending = append(d.pending, dec)
	n := len(d.pending)
	d.mu.Unlock()
	if n >= 1000 {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// run writes pending decisions every 200 ms (or at 1000), until ctx ends.
func (d *decisionLog) run(ctx context.Context, store interface {
	AppendDecisions(context.Context, []storage.Decision) error
}) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			d.flush(fctx, store) //nolint:errcheck // best effort at shutdown
			cancel()
			return
		case <-t.C:
		case <-d.wake:
		}
		err := d.flush(ctx, store)
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

func (d *decisionLog) flush(ctx context.Context, store interface {
	AppendDecisions(context.Context, []storage.Decision) error
}) error {
	for {
		d.mu.Lock()
		n := min(len(d.pending), 5000)
		batch := d.pending[:n:n]
		d.mu.Unlock()
		if n == 0 {
			return nil
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := store.AppendDecisions(wctx, batch)
		cancel()
		if err != nil {
			return err
		}
		d.recorded.Add(float64(n))
		d.mu.Lock()
		d.pending = append([]storage.Decision(nil), d.pending[n:]...)
		d.mu.Unlock()
	}
}
