package server

import (
	"github.com/prometheus/client_golang/prometheus"
)

// rootExpiry exports the NotAfter of every CA root in the replicated state,
// read at scrape time, for the root expiry alert (deploy/prometheus).
type rootExpiry struct {
	s    *Server
	desc *prometheus.Desc
}

func (r *rootExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- r.desc }

func (r *rootExpiry) Collect(ch chan<- prometheus.Metric) {
	n := r.s.node.Load()
	if n == nil {
		return
	}
	for _, root := range n.CAState().Roots {
		ch <- prometheus.MustNewConstMetric(r.desc, prometheus.GaugeValue, float64(root.NotAfter.Unix()), root.ID, root.State)
	}
}

// registerExpiryGauges exports, read at scrape time, the raft voter count
// (for the quorum alert) and the NotAfter of the CA roots and of the audit
// key certificate (for the expiry alerts); 0 or no series until raft and
// the audit key have started.
func (s *Server) registerExpiryGauges(reg prometheus.Registerer) {
	reg.MustRegister(
		&rootExpiry{s: s, desc: prometheus.NewDesc("tier0_ca_root_not_after_seconds",
			"NotAfter (unix seconds) of each CA root, by root ID and state (prepared, active, retired).", []string{"id", "state"}, nil)},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tier0_raft_voters",
			Help: "Voters in the raft configuration as this node sees it (quorum is voters/2+1).",
		}, func() float64 {
			n, voters := s.node.Load(), 0
			if n == nil {
				return 0
			}
			for _, m := range n.Status().Servers {
				if m.Suffrage == "Voter" {
					voters++
				}
			}
			return float64(voters)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tier0_audit_cert_not_after_seconds",
			Help: "NotAfter (unix seconds) of the audit key certificate that signs checkpoints (re-issued at start and on root changes); 0 until it is open.",
		}, func() float64 {
			if k := s.audit.Load(); k != nil {
				if t := k.NotAfter(); !t.IsZero() {
					return float64(t.Unix())
				}
			}
			return 0
		}),
	)
}
