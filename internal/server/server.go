// Package server is one tier0 CA node. New(Config) validates the settings;
// Run(ctx) binds the listeners, starts raft (alone or in a cluster), the
// key manager, the CA, the record store and every long-running loop (gRPC
// API, health and metrics, exporter, checkpointer, root follower and
// delegated rotation, federation fetcher, JWT key rotation, credential
// renewal, decision log, journal watch, bundle endpoint, pprof, cluster
// peer service) under one supervisor: the first loop to fail stops the
// node and Run returns its error. Shutdown drains in order (run.stop) and
// joins every goroutine before Run returns.
//
// It lives under internal/ because it is the wiring of one binary
// (cmd/tier0), not an API: its Config mirrors `tier0 server`'s flags and
// may change with them.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/server/journal"
	"github.com/tier0-ca/tier0/internal/server/keys"
	"github.com/tier0-ca/tier0/storage"
)

// Server is one node. Run it once.
type Server struct {
	cfg   Config
	log   *slog.Logger
	reg   *prometheus.Registry
	node  atomic.Pointer[ha.Node]         // set once raft has started (health, metrics)
	keys  atomic.Pointer[keys.Manager]    // set once the CA keys are open (health)
	audit atomic.Pointer[keys.AuditKey]   // set once the audit key is open (metrics)
	phase atomic.Pointer[string]          // the "startup" readiness check
	addrs atomic.Pointer[[2]string]       // the API and HTTP addresses, once bound (members.go)
	jrnl  atomic.Pointer[journal.Bounded] // set once the journal is open (health)
	ran   atomic.Bool
	hooks hooks
}

// hooks let this package's tests reach into a running node.
type hooks struct {
	wrapStore func(storage.AuditStore) storage.AuditStore // wraps the record store once opened
	loop      func(context.Context) error                 // runs with the background loops
	listening func(api, http string)                      // the API and HTTP addresses, once bound
}

// New validates cfg (errors name the `tier0 server` flag at fault), fills
// defaults and registers the node's own metrics. It does no I/O.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	s := &Server{cfg: cfg, log: cfg.Logger, reg: reg}
	s.setPhase(phaseStarting)
	s.registerRaftGauges(reg)
	s.registerExpiryGauges(reg)
	return s, nil
}

func (s *Server) setPhase(p string) { s.phase.Store(&p) }

// Run runs the node until ctx ends (then it returns nil after a clean
// shutdown) or a part of it fails (then it returns that error, also after
// shutting down in order).
func (s *Server) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("server: Run may be called only once")
	}
	rctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	r := &run{s: s, ctx: rctx}
	onFatal := func(err error) {
		if context.Cause(rctx) == nil {
			s.log.Error("stopping the node: a component failed", "err", err)
		}
		fail(err)
	}
	r.serving, r.loops = newGroup(ctx, onFatal), newGroup(ctx, onFatal)
	r.decisionLoop, r.peers = newGroup(ctx, onFatal), newGroup(ctx, onFatal)

	err := r.start()
	switch {
	case err == nil:
		s.setPhase(phaseReady)
		s.log.Info("tier0 ready", "api", r.apiAddr, "http", r.httpAddr,
			"bundle", r.path("bundle.pem"), "admin_credential", r.path("admin"))
		<-rctx.Done()
		s.log.Info("shutting down")
	case errors.Is(err, errNotServing): // up, not ready: health and metrics say why
		<-rctx.Done()
		err = nil
	}
	s.setPhase(phaseStopping)
	r.stop()

	var le *loopError
	switch {
	case errors.As(context.Cause(rctx), &le):
		return le
	case err != nil && ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		return nil // stopped while starting
	}
	return err
}

// reportIgnored logs, in one line, the settings used only on a data dir's
// first start that this (later) start ignores.
func (r *run) reportIgnored(rootExisted bool) {
	cfg := r.s.cfg
	var ignored []string
	args := []any{}
	if act, ok := r.node.CAState().Active(); rootExisted && ok && cfg.Keys.Signer != "" && cfg.Keys.Signer != act.KeyURI {
		ignored = append(ignored, "--signer")
		args = append(args, "active_root_key", act.KeyID)
	}
	if r.cluster != nil && !r.cluster.joining && cfg.Cluster.JoinToken != "" {
		ignored = append(ignored, "--join-token")
	}
	if len(ignored) == 0 {
		return
	}
	r.s.log.Warn(fmt.Sprintf("ignored (used only on this data dir's first start): %s", strings.Join(ignored, ", ")),
		append(args, "hint", "rotate the CA root with `tier0 ca prepare` and `tier0 ca activate`; a node that has joined keeps its membership")...)
}
