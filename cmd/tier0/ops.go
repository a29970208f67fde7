package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca"
)

func newTokenCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Agent join tokens"}
	var agent, node string
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create --agent NAME | --node ID [--ttl 1h]",
		Short: "Create a one-time join token for an agent (printed once, stored only hashed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				resp, err := c.Admin().CreateJoinToken(cmd.Context(), &tier0v1.CreateJoinTokenRequest{Agent: agent, Node: node, TtlSeconds: int64(ttl / time.Second)})
				if err != nil {
					return cliErr(err)
				}
				fmt.Fprintln(cmd.OutOrStdout(), resp.GetToken())
				who := "agent " + agent
				if node != "" {
					who = "cluster node " + node
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "join token for %s, valid until %s, works once\n", who, time.Unix(resp.GetExpiresAt(), 0).UTC().Format(time.RFC3339))
				return nil
			})
		},
	}
	create.Flags().StringVar(&agent, "agent", "", "agent name (its SVID will be spiffe://TD/tier0/agent/NAME)")
	create.Flags().DurationVar(&ttl, "ttl", time.Hour, "token validity")
	create.Flags().StringVar(&node, "node", "", "instead of --agent: a token for a new cluster node (`tier0 server --join ... --join-token T`)")
	create.MarkFlagsOneRequired("agent", "node")
	create.MarkFlagsMutuallyExclusive("agent", "node")
	cmd.AddCommand(create)
	return cmd
}

func newEntryCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "entry", Short: "Registration entries: which agent may get which SPIFFE ID"}
	var agent, id string
	var ttl time.Duration
	var output string
	var selectors, federates []string
	create := &cobra.Command{
		Use:   "create --agent NAME --spiffe-id ID [--ttl 15m..60m] [--selector unix:uid:N ...] [--federates-with TD ...]",
		Short: "Grant a SPIFFE ID to an agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, s := range selectors {
				if _, err := ca.ParseSelector(s); err != nil {
					return fmt.Errorf("--selector: %w", err)
				}
			}
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				resp, err := c.Admin().CreateEntry(cmd.Context(), &tier0v1.CreateEntryRequest{Agent: agent, SpiffeId: id, TtlSeconds: int64(ttl / time.Second), Selectors: selectors, FederatesWith: federates})
				if err != nil {
					return cliErr(err)
				}
				if output == outJSON { // the entry made: one JSON object
					return json.NewEncoder(cmd.OutOrStdout()).Encode(entryJSON(resp.GetEntry()))
				}
				return printEntries(cmd.OutOrStdout(), output, []*tier0v1.Entry{resp.GetEntry()})
			})
		},
	}
	create.Flags().StringVar(&agent, "agent", "", "agent name")
	create.Flags().StringVar(&id, "spiffe-id", "", "SPIFFE ID to grant, in this trust domain")
	create.Flags().DurationVar(&ttl, "ttl", 0, "SVID lifetime for this entry, 15m..60m (default 30m)")
	create.Flags().StringArrayVar(&selectors, "selector", nil, "workload selector, repeatable, all must match: unix:uid:N, unix:gid:N, unix:path:/abs/path, k8s:ns:NS, k8s:sa:SA, k8s:pod-label:K:V, k8s:container-name:C ... (docs/FROM-SPIRE.md; none: for `tier0-agent fetch` only)")
	create.Flags().StringArrayVar(&federates, "federates-with", nil, "federated trust domain whose bundle this entry's workloads receive besides ours, repeatable (SPIRE's federatesWith; none: only our bundle)")
	_ = create.MarkFlagRequired("agent")
	_ = create.MarkFlagRequired("spiffe-id")
	list := &cobra.Command{
		Use:   "list [--agent NAME]",
		Short: "List registration entries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				resp, err := c.Admin().ListEntries(cmd.Context(), &tier0v1.ListEntriesRequest{Agent: agent})
				if err != nil {
					return cliErr(err)
				}
				return printEntries(cmd.OutOrStdout(), output, resp.GetEntries())
			})
		},
	}
	list.Flags().StringVar(&agent, "agent", "", "only this agent's entries")
	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a registration entry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				if _, err := c.Admin().DeleteEntry(cmd.Context(), &tier0v1.DeleteEntryRequest{Id: args[0]}); err != nil {
					return cliErr(err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", args[0])
				return nil
			})
		},
	}
	outputFlag(cmd.PersistentFlags(), &output, "output: table or json (entry list: one JSON array)", outTable, outJSON)
	cmd.AddCommand(create, list, del)
	return cmd
}

func entryJSON(e *tier0v1.Entry) map[string]any {
	sel := e.GetSelectors()
	if sel == nil {
		sel = []string{}
	}
	fed := e.GetFederatesWith()
	if fed == nil {
		fed = []string{}
	}
	return map[string]any{"id": e.GetId(), "agent": e.GetAgent(), "spiffe_id": e.GetSpiffeId(), "ttl": (time.Duration(e.GetTtlSeconds()) * time.Second).String(),
		"selectors": sel, "federates_with": fed}
}

// printEntries prints a table, or with -o json one JSON array.
func printEntries(w io.Writer, format string, entries []*tier0v1.Entry) error {
	if format == outJSON {
		out := make([]map[string]any, 0, len(entries))
		for _, e := range entries {
			out = append(out, entryJSON(e))
		}
		return json.NewEncoder(w).Encode(out)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGENT\tSPIFFE ID\tTTL\tSELECTORS\tFEDERATES WITH")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.GetId(), e.GetAgent(), e.GetSpiffeId(), time.Duration(e.GetTtlSeconds())*time.Second,
			strings.Join(e.GetSelectors(), ","), strings.Join(e.GetFederatesWith(), ","))
	}
	return tw.Flush()
}
