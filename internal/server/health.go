package server

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness condition: Check returns nil while it holds, else
// the reason the node is not ready.
type Check struct {
	Name  string
	Check func() error
}

// Startup phases reported by the "startup" check until the node is ready.
const (
	phaseStarting = "starting"
	phaseReady    = "ready"
	phaseStopping = "shutting down"
	// The record store was refused before the node could issue its own
	// credentials: it serves health and metrics only (run.notServing).
	phaseNotServing = "not serving: the record store was refused before this node could issue its own credentials"
	// The node diverged replaying its raft log (ha.ErrDiverged): health and
	// metrics only (run.notServing).
	phaseDiverged = "not serving: this node cannot apply its raft log"
)

// readiness is what /readyz checks, in order. Add a condition here (one
// line) to make the node unready while it does not hold.
func (s *Server) readiness() []Check {
	return []Check{
		{Name: "raft", Check: s.raftReady},
		{Name: "membership", Check: s.membershipReady},
		{Name: "raft log", Check: s.logReady},
		{Name: "ca root", Check: s.rootReady},
		{Name: "record store", Check: s.storeReady},
		{Name: "signer", Check: s.signerReady},
		{Name: "journal", Check: s.journalReady},
		{Name: "startup", Check: s.started},
	}
}

func (s *Server) raftReady() error {
	n := s.node.Load()
	if n == nil {
		return errors.New("waiting for raft to start")
	}
	if n.Status().Leader == "" {
		return errors.New("waiting for a raft leader")
	}
	return nil
}

// logReady is the node's own health: it has not diverged (met an entry it
// cannot apply) and can write its raft log (ha.Node.Health).
func (s *Server) logReady() error {
	if n := s.node.Load(); n != nil {
		return n.Health()
	}
	return nil // raftReady says why
}

func (s *Server) rootReady() error {
	n := s.node.Load()
	if n == nil {
		return nil // raftReady says why
	}
	if _, ok := n.CAState().Active(); !ok {
		return errors.New("waiting for the CA root to be created or replicated")
	}
	return nil
}

// storeReady fails, for good, once the exporter has refused the record
// store (it does not continue this journal: ha.ErrStoreMismatch): the
// reason names both lineages and what to do.
func (s *Server) storeReady() error {
	if n := s.node.Load(); n != nil {
		return n.ExportHealth()
	}
	return nil
}

// signerReady fails while the CA key of a direct-mode node cannot sign
// (keys.Manager.SignerReady).
func (s *Server) signerReady() error {
	if k := s.keys.Load(); k != nil {
		return k.SignerReady()
	}
	return nil
}

func (s *Server) started() error {
	if p := *s.phase.Load(); p != phaseReady {
		return errors.New(p)
	}
	return nil
}

// healthMux serves /livez (the process is up), /readyz (every readiness
// check holds: 200 "ok: leader ID", else 503 with each failing check),
// /healthz (Vault-like codes, healthz.go) and /metrics.
func (s *Server) healthMux(reg *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", s.healthz)
	// /livez: the process is alive (Kubernetes liveness), from the first
	// second and whatever the cluster's state: never tied to quorum.
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if failed := s.notReady(); len(failed) > 0 {
			http.Error(w, "not ready: "+strings.Join(failed, "; "), http.StatusServiceUnavailable)
			return
		}
		n := s.node.Load()
		w.Header().Set("Tier0-Role", role(n))
		_, _ = fmt.Fprintf(w, "ok: leader %s\n", n.Status().Leader)
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

// registerRaftGauges exports the node's view of raft leadership, read at
// scrape time, for the "no leader" alert (deploy/prometheus); 0 until raft
// has started.
func (s *Server) registerRaftGauges(reg prometheus.Registerer) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tier0_raft_has_leader",
			Help: "1 while this node knows a raft leader (the cluster can commit), else 0.",
		}, func() float64 {
			if n := s.node.Load(); n != nil && n.Status().Leader != "" {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tier0_raft_is_leader",
			Help: "1 on the raft leader, else 0.",
		}, func() float64 {
			if n := s.node.Load(); n != nil && n.IsLeader() {
				return 1
			}
			return 0
		}),
	)
}
