package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/internal/cliout"
	"github.com/tier0-ca/tier0/internal/operator"
)

func newTokenCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Agent join tokens"}
	var agent, node, admin, auditor, output string
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create --agent NAME | --node ID | --admin NAME | --auditor NAME [--ttl 1h] [-o text|json]",
		Short: "Create a one-time join token for an agent, a cluster node or a named operator (printed once, stored only hashed)",
		Long: `Create prints the token alone on stdout (T=$(tier0 token create ...)) and
what it created on stderr; with -o json one object with both.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			agent, err := g.agentName(agent)
			if err != nil {
				return err
			}
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				t, err := operator.CreateToken(cmd.Context(), c, operator.TokenRequest{Agent: agent, Node: node, Admin: admin, Auditor: auditor, TTL: ttl})
				if err != nil {
					return err
				}
				return cliout.TokenCreated(cmd.OutOrStdout(), cmd.ErrOrStderr(), output, t)
			})
		},
	}
	agentFlag(create.Flags(), &agent, "the agent the token admits (its SVID will be spiffe://TD/tier0/agent/NAME)")
	create.Flags().DurationVar(&ttl, "ttl", time.Hour, "token validity")
	create.Flags().StringVar(&node, "node", "", "instead of --agent: a token for a new cluster node (`tier0 server --join ... --join-token T`)")
	create.Flags().StringVar(&admin, "admin", "", "instead of --agent: enrol named operator NAME (spiffe://TD/tier0/admin/NAME; `tier0 login --token T`)")
	create.Flags().StringVar(&auditor, "auditor", "", "instead of --agent: enrol named auditor NAME (spiffe://TD/tier0/auditor/NAME; `tier0 login --token T`)")
	outputFlag(create.Flags(), &output, "text (the token alone) or json", outText, outJSON)
	create.MarkFlagsOneRequired("agent", "node", "admin", "auditor")
	create.MarkFlagsMutuallyExclusive("agent", "node", "admin", "auditor")
	cmd.AddCommand(create, newTokenListCmd(g), newTokenRevokeCmd(g))
	return cmd
}

func newEntryCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "entry", Short: "Registration entries: which agent may get which SPIFFE ID"}
	var agent, id string
	var ttl time.Duration
	var selectors, federates, nodeSelectors []string
	var createOut, listOut, delOut string
	create := &cobra.Command{
		Use:   "create (--agent NAME | --node-selector S ...) --spiffe-id ID [--ttl 15m..60m] [--selector unix:uid:N ...] [--federates-with TD ...] [-o text|json]",
		Short: "Grant a SPIFFE ID to an agent, or to every agent attested with a set of node selectors",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (agent == "") == (len(nodeSelectors) == 0) {
				return errors.New("give exactly one of --agent and --node-selector")
			}
			for _, s := range selectors {
				if _, err := ca.ParseSelector(s); err != nil {
					return fmt.Errorf("--selector: %w", err)
				}
			}
			agent, err := g.agentName(agent)
			if err != nil {
				return err
			}
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				resp, err := c.Admin().CreateEntry(cmd.Context(), &tier0v1.CreateEntryRequest{Agent: agent, SpiffeId: id, TtlSeconds: int64(ttl / time.Second), Selectors: selectors, FederatesWith: federates, NodeSelectors: nodeSelectors})
				if err != nil {
					return cliErr(err)
				}
				return cliout.EntryCreated(cmd.OutOrStdout(), createOut, resp.GetEntry())
			})
		},
	}
	agentFlag(create.Flags(), &agent, "the agent that may get the ID")
	create.Flags().StringVar(&id, "spiffe-id", "", "SPIFFE ID to grant, in this trust domain")
	create.Flags().DurationVar(&ttl, "ttl", 0, "SVID lifetime for this entry, 15m..60m (default 30m); also the most an agent may ask for (longer requests are clamped)")
	create.Flags().StringArrayVar(&selectors, "selector", nil, "workload selector, repeatable, all must match: unix:uid:N, unix:gid:N, unix:path:/abs/path, k8s:ns:NS, k8s:sa:SA, k8s:pod-label:K:V, k8s:container-name:C ... (docs/FROM-SPIRE.md; none: for `tier0-agent fetch` only)")
	create.Flags().StringArrayVar(&federates, "federates-with", nil, "federated trust domain whose bundle this entry's workloads receive besides ours, repeatable (SPIRE's federatesWith; none: only our bundle)")
	outputFlag(create.Flags(), &createOut, "text (one line) or json (the entry)", outText, outJSON)
	create.Flags().StringArrayVar(&nodeSelectors, "node-selector", nil, "instead of --agent: node selector, repeatable; the entry applies to every agent whose node attestation yielded all of them (SPIRE's node alias), e.g. k8s_psat:cluster:prod")
	_ = create.MarkFlagRequired("spiffe-id")
	list := &cobra.Command{
		Use:   "list [--agent NAME] [-o table|json|csv]",
		Short: "List registration entries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			agent, err := g.agentName(agent)
			if err != nil {
				return err
			}
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				resp, err := c.Admin().ListEntries(cmd.Context(), &tier0v1.ListEntriesRequest{Agent: agent})
				if err != nil {
					return cliErr(err)
				}
				return cliout.Entries(cmd.OutOrStdout(), listOut, resp.GetEntries())
			})
		},
	}
	agentFlag(list.Flags(), &agent, "only this agent's entries")
	outputFlag(list.Flags(), &listOut, "table, json (one array) or csv", outTable, outJSON, outCSV)
	del := &cobra.Command{
		Use:   "delete ID [-o text|json]",
		Short: "Delete a registration entry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				if _, err := c.Admin().DeleteEntry(cmd.Context(), &tier0v1.DeleteEntryRequest{Id: args[0]}); err != nil {
					return cliErr(err)
				}
				return printChange(cmd.OutOrStdout(), delOut, map[string]any{"deleted": args[0]}, "deleted entry %s", args[0])
			})
		},
	}
	outputFlag(del.Flags(), &delOut, "text or json", outText, outJSON)
	cmd.AddCommand(create, list, del)
	return cmd
}
