package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// kindFlag is --kind of the agent commands.
func parseKind(s string) (tier0v1.SubjectKind, bool, error) {
	switch s {
	case "agent":
		return tier0v1.SubjectKind_SUBJECT_KIND_AGENT, false, nil
	case "admin":
		return tier0v1.SubjectKind_SUBJECT_KIND_ADMIN, false, nil
	case "auditor":
		return tier0v1.SubjectKind_SUBJECT_KIND_AUDITOR, false, nil
	case "all":
		return 0, true, nil
	}
	return 0, false, fmt.Errorf("--kind %q: want agent, admin, auditor or all", s)
}

func newAgentCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "agent", Short: "The agent registry: attested agents and named operators; evict, ban, unban"}
	var output, kind string
	cmd.PersistentFlags().StringVar(&kind, "kind", "agent", "which registry subjects: agent, admin, auditor (named operators), or all (list only)")
	list := &cobra.Command{
		Use:   "list [--kind agent|admin|auditor|all]",
		Short: "List attested agents (or named operators): SPIFFE ID, state, attestation, current SVID, last renewal",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, all, err := parseKind(kind)
			if err != nil {
				return err
			}
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				resp, err := tier0v1.NewAgentAdminClient(c).ListAgents(cmd.Context(), &tier0v1.ListAgentsRequest{Kind: k, AllKinds: all})
				if err != nil {
					return cliErr(err)
				}
				return printAgents(cmd.OutOrStdout(), output, resp.GetAgents())
			})
		},
	}
	show := &cobra.Command{
		Use:   "show NAME|SPIFFE-ID",
		Short: "Show one agent (or named operator)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, all, err := parseKind(kind)
			if err != nil || all {
				return fmt.Errorf("--kind: want agent, admin or auditor")
			}
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				a, err := tier0v1.NewAgentAdminClient(c).GetAgent(cmd.Context(), &tier0v1.GetAgentRequest{Name: args[0], Kind: k})
				if err != nil {
					return cliErr(err)
				}
				if output == outJSON {
					return json.NewEncoder(cmd.OutOrStdout()).Encode(agentJSON(a))
				}
				return printAgentDetail(cmd.OutOrStdout(), a)
			})
		},
	}
	outputFlag(list.Flags(), &output, "output: table, json (one JSON array) or csv", outTable, outJSON, outCSV)
	outputFlag(show.Flags(), &output, "output: table or json", outTable, outJSON)
	cmd.AddCommand(list, show,
		agentStateCmd(g, &kind, "evict", "Refuse the agent's current credential at once on every node (its next renewal and every mint answer PermissionDenied); a new join token re-attests it"),
		agentStateCmd(g, &kind, "ban", "Evict the agent and refuse any attestation for its name until unban"),
		agentStateCmd(g, &kind, "unban", "Allow the agent to attest again with a new join token (it stays evicted until then)"))
	return cmd
}

func agentStateCmd(g *globalFlags, kind *string, op, short string) *cobra.Command {
	var out string
	output := &out
	c := &cobra.Command{
		Use:   op + " NAME|SPIFFE-ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, all, err := parseKind(*kind)
			if err != nil || all {
				return fmt.Errorf("--kind: want agent, admin or auditor")
			}
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				a, err := tier0v1.NewAgentAdminClient(c).SetAgentState(cmd.Context(), &tier0v1.SetAgentStateRequest{Name: args[0], Kind: k, Op: op})
				if err != nil {
					return cliErr(err)
				}
				if *output == outJSON {
					return json.NewEncoder(cmd.OutOrStdout()).Encode(agentJSON(a))
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s is %s (attestation %d)\n", a.GetSpiffeId(), a.GetState(), a.GetGeneration())
				return nil
			})
		},
	}
	outputFlag(c.Flags(), output, "output: text or json", outText, outJSON)
	return c
}

func kindName(k tier0v1.SubjectKind) string {
	switch k {
	case tier0v1.SubjectKind_SUBJECT_KIND_ADMIN:
		return "admin"
	case tier0v1.SubjectKind_SUBJECT_KIND_AUDITOR:
		return "auditor"
	}
	return "agent"
}

func unixRFC3339(s int64) string {
	if s == 0 {
		return ""
	}
	return time.Unix(s, 0).UTC().Format(time.RFC3339)
}

func agentJSON(a *tier0v1.AgentInfo) map[string]any {
	sel := a.GetSelectors()
	if sel == nil {
		sel = []string{}
	}
	return map[string]any{"name": a.GetName(), "kind": kindName(a.GetKind()), "spiffe_id": a.GetSpiffeId(), "state": a.GetState(),
		"generation": a.GetGeneration(), "selectors": sel, "attested_at": unixRFC3339(a.GetAttestedAt()), "attested_node": a.GetAttestedNode(),
		"serial": a.GetSerial(), "expires_at": unixRFC3339(a.GetNotAfter()), "renewed_at": unixRFC3339(a.GetRenewedAt()),
		"renewed_node": a.GetRenewedNode(), "state_by": a.GetStateBy(), "state_at": unixRFC3339(a.GetStateAt())}
}

func printAgents(w io.Writer, format string, as []*tier0v1.AgentInfo) error {
	if format == outJSON {
		out := make([]map[string]any, 0, len(as))
		for _, a := range as {
			out = append(out, agentJSON(a))
		}
		return json.NewEncoder(w).Encode(out)
	}
	if format == outCSV {
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"spiffe_id", "kind", "state", "generation", "serial", "expires_at", "renewed_at", "renewed_node", "selectors"})
		for _, a := range as {
			_ = cw.Write([]string{a.GetSpiffeId(), kindName(a.GetKind()), a.GetState(), fmt.Sprint(a.GetGeneration()), a.GetSerial(),
				unixRFC3339(a.GetNotAfter()), unixRFC3339(a.GetRenewedAt()), a.GetRenewedNode(), strings.Join(a.GetSelectors(), " ")})
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SPIFFE ID\tSTATE\tATTESTATION\tSERIAL\tEXPIRES\tLAST RENEWAL\tNODE\tSELECTORS")
	for _, a := range as {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", a.GetSpiffeId(), a.GetState(), a.GetGeneration(), a.GetSerial(),
			unixRFC3339(a.GetNotAfter()), unixRFC3339(a.GetRenewedAt()), a.GetRenewedNode(), strings.Join(a.GetSelectors(), ","))
	}
	return tw.Flush()
}

func printAgentDetail(w io.Writer, a *tier0v1.AgentInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, row := range [][2]string{
		{"spiffe id", a.GetSpiffeId()}, {"kind", kindName(a.GetKind())}, {"state", a.GetState()},
		{"attestation", fmt.Sprint(a.GetGeneration())}, {"attested at", unixRFC3339(a.GetAttestedAt())}, {"attested on", a.GetAttestedNode()},
		{"selectors", strings.Join(a.GetSelectors(), ",")}, {"svid serial", a.GetSerial()}, {"svid expires", unixRFC3339(a.GetNotAfter())},
		{"last renewal", unixRFC3339(a.GetRenewedAt())}, {"renewed on", a.GetRenewedNode()},
		{"state set by", a.GetStateBy()}, {"state set at", unixRFC3339(a.GetStateAt())},
	} {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	return tw.Flush()
}

// newTokenListCmd and newTokenRevokeCmd are `tier0 token list|revoke`.
func newTokenListCmd(g *globalFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List join tokens that have not expired: hash prefix, subject, expiry, used, creator (never the token)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				resp, err := tier0v1.NewAgentAdminClient(c).ListTokens(cmd.Context(), &tier0v1.ListTokensRequest{})
				if err != nil {
					return cliErr(err)
				}
				return printTokens(cmd.OutOrStdout(), output, resp.GetTokens())
			})
		},
	}
	outputFlag(cmd.Flags(), &output, "output: table, json (one JSON array) or csv", outTable, outJSON, outCSV)
	return cmd
}

func newTokenRevokeCmd(g *globalFlags) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "revoke HASH-PREFIX",
		Short: "Revoke an unused join token (HASH-PREFIX: at least 8 hex digits from tier0 token list)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				t, err := tier0v1.NewAgentAdminClient(c).RevokeToken(cmd.Context(), &tier0v1.RevokeTokenRequest{HashPrefix: args[0]})
				if err != nil {
					return cliErr(err)
				}
				if output == outJSON {
					return printJSON(cmd.OutOrStdout(), map[string]any{"revoked": t.GetHashPrefix(), "subject": t.GetSubject()})
				}
				fmt.Fprintf(cmd.OutOrStdout(), "revoked token %s for %s\n", t.GetHashPrefix(), t.GetSubject())
				return nil
			})
		},
	}
	outputFlag(c.Flags(), &output, "output: text or json", outText, outJSON)
	return c
}

func printTokens(w io.Writer, format string, ts []*tier0v1.TokenInfo) error {
	if format == outJSON {
		out := make([]map[string]any, 0, len(ts))
		for _, t := range ts {
			out = append(out, map[string]any{"hash_prefix": t.GetHashPrefix(), "subject": t.GetSubject(), "expires_at": unixRFC3339(t.GetExpiresAt()),
				"used": t.GetUsed(), "creator": t.GetCreator(), "created_at": unixRFC3339(t.GetCreatedAt())})
		}
		return json.NewEncoder(w).Encode(out)
	}
	if format == outCSV {
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"hash_prefix", "subject", "expires_at", "used", "creator", "created_at"})
		for _, t := range ts {
			_ = cw.Write([]string{t.GetHashPrefix(), t.GetSubject(), unixRFC3339(t.GetExpiresAt()), fmt.Sprint(t.GetUsed()), t.GetCreator(), unixRFC3339(t.GetCreatedAt())})
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HASH PREFIX\tSUBJECT\tEXPIRES\tUSED\tCREATOR")
	for _, t := range ts {
		used := "unused"
		if t.GetUsed() {
			used = "used"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.GetHashPrefix(), t.GetSubject(), unixRFC3339(t.GetExpiresAt()), used, t.GetCreator())
	}
	return tw.Flush()
}

// createOperatorToken is `tier0 token create --admin NAME | --auditor NAME`.
func createOperatorToken(cmd *cobra.Command, g *globalFlags, admin, auditor string, ttl time.Duration, output string) error {
	kind, name := tier0v1.SubjectKind_SUBJECT_KIND_ADMIN, admin
	if auditor != "" {
		kind, name = tier0v1.SubjectKind_SUBJECT_KIND_AUDITOR, auditor
	}
	return withOperator(cmd, g, "admin", func(c *client.Client) error {
		resp, err := tier0v1.NewAgentAdminClient(c).CreateToken(cmd.Context(), &tier0v1.CreateTokenRequest{Kind: kind, Name: name, TtlSeconds: int64(ttl / time.Second)})
		if err != nil {
			return cliErr(err)
		}
		exp := time.Unix(resp.GetExpiresAt(), 0).UTC().Format(time.RFC3339)
		if output == outJSON {
			return printJSON(cmd.OutOrStdout(), map[string]any{"token": resp.GetToken(), kindName(kind): name, "expires_at": exp})
		}
		fmt.Fprintln(cmd.OutOrStdout(), resp.GetToken())
		fmt.Fprintf(cmd.ErrOrStderr(), "created a join token for %s %s, valid until %s, works once: tier0 login --token T --server ADDR --data-dir DIR\n",
			kindName(kind), name, exp)
		return nil
	})
}
