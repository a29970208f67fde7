package main

import (
	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/cliout"
)

// newClusterCmd: `tier0 cluster status|join|remove|transfer-leadership`
// (admin credential; any member answers, writes reach the leader).
func newClusterCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Raft cluster membership and status"}
	var format string
	status := &cobra.Command{
		Use:   "status [-o table|json]",
		Short: "Every member as it sees itself (API and raft address, suffrage, state, last contact, applied/commit index, lag, health, version); exits 1 without a leader or with an unhealthy voter",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				st, err := tier0v1.NewClusterClient(c).ClusterStatus(cmd.Context(), &tier0v1.ClusterStatusRequest{})
				if err != nil {
					return cliErr(err)
				}
				return cliout.ClusterStatus(cmd.OutOrStdout(), st, format)
			})
		},
	}
	outputFlag(status.Flags(), &format, "table or json", outTable, outJSON)

	var joinID, joinAddr, changeOut string
	join := &cobra.Command{
		Use:   "join --node-id ID --raft-addr HOST:PORT [-o text|json]",
		Short: "Add a voter (new nodes normally join themselves with `tier0 server --join ... --join-token ...`)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				_, err := tier0v1.NewClusterClient(c).ClusterJoin(cmd.Context(), &tier0v1.ClusterJoinRequest{NodeId: joinID, RaftAddress: joinAddr})
				if err != nil {
					return cliErr(err)
				}
				return printChange(cmd.OutOrStdout(), changeOut, map[string]any{"added_voter": joinID, "raft_address": joinAddr},
					"added voter %s (raft %s) to the cluster", joinID, joinAddr)
			})
		},
	}
	join.Flags().StringVar(&joinID, "node-id", "", "node ID")
	join.Flags().StringVar(&joinAddr, "raft-addr", "", "the node's raft address")
	_ = join.MarkFlagRequired("node-id")
	_ = join.MarkFlagRequired("raft-addr")

	remove := &cobra.Command{
		Use:   "remove ID [-o text|json]",
		Short: "Remove a member from the raft configuration",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				_, err := tier0v1.NewClusterClient(c).ClusterRemove(cmd.Context(), &tier0v1.ClusterRemoveRequest{NodeId: args[0]})
				if err != nil {
					return cliErr(err)
				}
				return printChange(cmd.OutOrStdout(), changeOut, map[string]any{"removed": args[0]}, "removed %s from the cluster", args[0])
			})
		},
	}

	var to string
	transfer := &cobra.Command{
		Use:   "transfer-leadership [--to ID] [-o text|json]",
		Short: "Hand leadership to another member (default: the most up-to-date follower)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				cc := tier0v1.NewClusterClient(c)
				if _, err := cc.TransferLeadership(cmd.Context(), &tier0v1.TransferLeadershipRequest{ToNodeId: to}); err != nil {
					return cliErr(err)
				}
				// Name the new leader as the answering node sees it now
				// (empty while the election is still going on).
				leader := ""
				if st, err := cc.ClusterStatus(cmd.Context(), &tier0v1.ClusterStatusRequest{}); err == nil {
					leader = st.GetLeaderId()
				}
				line := "transferred leadership to " + to
				switch {
				case to == "" && leader != "":
					line = "transferred leadership; the leader is now " + leader
				case to == "":
					line = "transferred leadership to the most up-to-date follower (election in progress)"
				}
				return printChange(cmd.OutOrStdout(), changeOut, map[string]any{"requested": to, "leader": leader}, "%s", line)
			})
		},
	}
	transfer.Flags().StringVar(&to, "to", "", "target node ID")
	for _, c := range []*cobra.Command{join, remove, transfer} {
		outputFlag(c.Flags(), &changeOut, "text (one line) or json", outText, outJSON)
	}
	cmd.AddCommand(status, join, remove, transfer)
	return cmd
}
