package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
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
	var agent, node, admin, auditor, output string
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create --agent NAME | --node ID | --admin NAME | --auditor NAME [--ttl 1h] [-o text|json]",
		Short: "Create a one-time join token for an agent, a cluster node or a named operator (printed once, stored only hashed)",
		Long: `Create prints the token alone on stdout (T=$(tier0 token create ...)) and
what it created on stderr; with -o json one object with both.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if admin != "" || auditor != "" { // agent_cmd.go
				return createOperatorToken(cmd, g, admin, auditor, ttl, output)
			}
			agent, err := g.agentName(agent)
			if err != nil {
				return err
			}
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				resp, err := c.Admin().CreateJoinToken(cmd.Context(), &tier0v1.CreateJoinTokenRequest{Agent: agent, Node: node, TtlSeconds: int64(ttl / time.Second)})
				if err != nil {
					return cliErr(err)
				}
				exp := time.Unix(resp.GetExpiresAt(), 0).UTC().Format(time.RFC3339)
				if output == outJSON {
					return printJSON(cmd.OutOrStdout(), map[string]any{"token": resp.GetToken(), "agent": agent, "node": node, "expires_at": exp})
				}
				fmt.Fprintln(cmd.OutOrStdout(), resp.GetToken())
				who := "agent " + agent
				if node != "" {
					who = "cluster node " + node
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "created a join token for %s, valid until %s, works once\n", who, exp)
				return nil
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
				e := resp.GetEntry()
				return printChange(cmd.OutOrStdout(), createOut, entryJSON(e), "created entry %s: agent %s may get %s for %s%s",
					e.GetId(), e.GetAgent(), e.GetSpiffeId(), time.Duration(e.GetTtlSeconds())*time.Second, entryExtras(e))
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
				return printEntries(cmd.OutOrStdout(), listOut, resp.GetEntries())
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

// entryExtras is the selectors and federated trust domains of e for a
// one-line description ("" when it has none).
func entryExtras(e *tier0v1.Entry) string {
	s := ""
	if len(e.GetNodeSelectors()) > 0 {
		s += ", node selectors " + strings.Join(e.GetNodeSelectors(), ",")
	}
	if len(e.GetSelectors()) > 0 {
		s += ", selectors " + strings.Join(e.GetSelectors(), ",")
	}
	if len(e.GetFederatesWith()) > 0 {
		s += ", federates with " + strings.Join(e.GetFederatesWith(), ",")
	}
	return s
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
		"selectors": sel, "federates_with": fed, "node_selectors": nonNil(e.GetNodeSelectors())}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// printEntries prints a table, one JSON array (-o json) or CSV.
func printEntries(w io.Writer, format string, entries []*tier0v1.Entry) error {
	switch format {
	case outJSON:
		out := make([]map[string]any, 0, len(entries))
		for _, e := range entries {
			out = append(out, entryJSON(e))
		}
		return json.NewEncoder(w).Encode(out)
	case outCSV:
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"id", "agent", "spiffe_id", "ttl", "selectors", "federates_with"})
		for _, e := range entries {
			_ = cw.Write([]string{e.GetId(), e.GetAgent(), e.GetSpiffeId(), (time.Duration(e.GetTtlSeconds()) * time.Second).String(),
				strings.Join(e.GetSelectors(), " "), strings.Join(e.GetFederatesWith(), " ")})
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGENT\tSPIFFE ID\tTTL\tSELECTORS\tFEDERATES WITH")
	for _, e := range entries {
		agent := e.GetAgent()
		if ns := e.GetNodeSelectors(); len(ns) > 0 {
			agent = "node:" + strings.Join(ns, "+")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.GetId(), agent, e.GetSpiffeId(), time.Duration(e.GetTtlSeconds())*time.Second,
			strings.Join(e.GetSelectors(), ","), strings.Join(e.GetFederatesWith(), ","))
	}
	return tw.Flush()
}
