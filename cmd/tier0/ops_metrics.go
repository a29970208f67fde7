package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tier0-ca/tier0/ha"
)

// registerRaftGauges exports the node's view of raft leadership, read at
// scrape time, for the "no leader" alert (deploy/prometheus).
func registerRaftGauges(reg prometheus.Registerer, node *ha.Node) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tier0_raft_has_leader",
			Help: "1 while this node knows a raft leader (the cluster can commit), else 0.",
		}, func() float64 {
			if node.LeaderID() != "" {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tier0_raft_is_leader",
			Help: "1 on the raft leader, else 0.",
		}, func() float64 {
			if node.IsLeader() {
				return 1
			}
			return 0
		}),
	)
}
