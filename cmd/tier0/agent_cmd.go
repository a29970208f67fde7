package main

import (
	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/cliout"
)

func newAgentCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "agent", Short: "The agent registry: attested agents and named operators; evict, ban, unban"}
	var output, kind string
	cmd.PersistentFlags().StringVar(&kind, "kind", "agent", "which registry subjects: agent, admin, auditor (named operators), or all (list only)")
	list := &cobra.Command{
		Use:   "list [--kind agent|admin|auditor|all]",
		Short: "List attested agents (or named operators): SPIFFE ID, state, attestation, current SVID, last renewal",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, all, err := cliout.ParseKind(kind)
			if err != nil {
				return err
			}
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				resp, err := tier0v1.NewAgentAdminClient(c).ListAgents(cmd.Context(), &tier0v1.ListAgentsRequest{Kind: k, AllKinds: all})
				if err != nil {
					return cliErr(err)
				}
				return cliout.Agents(cmd.OutOrStdout(), output, resp.GetAgents())
			})
		},
	}
	show := &cobra.Command{
		Use:   "show NAME|SPIFFE-ID",
		Short: "Show one agent (or named operator)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := cliout.ParseOneKind(kind)
			if err != nil {
				return err
			}
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				a, err := tier0v1.NewAgentAdminClient(c).GetAgent(cmd.Context(), &tier0v1.GetAgentRequest{Name: args[0], Kind: k})
				if err != nil {
					return cliErr(err)
				}
				return cliout.Agent(cmd.OutOrStdout(), output, a)
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
	output := new(string)
	c := &cobra.Command{
		Use:   op + " NAME|SPIFFE-ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := cliout.ParseOneKind(*kind)
			if err != nil {
				return err
			}
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				a, err := tier0v1.NewAgentAdminClient(c).SetAgentState(cmd.Context(), &tier0v1.SetAgentStateRequest{Name: args[0], Kind: k, Op: op})
				if err != nil {
					return cliErr(err)
				}
				return cliout.AgentState(cmd.OutOrStdout(), *output, a)
			})
		},
	}
	outputFlag(c.Flags(), output, "output: text or json", outText, outJSON)
	return c
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
				return cliout.Tokens(cmd.OutOrStdout(), output, resp.GetTokens())
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
				return printChange(cmd.OutOrStdout(), output, map[string]any{"revoked": t.GetHashPrefix(), "subject": t.GetSubject()},
					"revoked token %s for %s", t.GetHashPrefix(), t.GetSubject())
			})
		},
	}
	outputFlag(c.Flags(), &output, "output: text or json", outText, outJSON)
	return c
}
