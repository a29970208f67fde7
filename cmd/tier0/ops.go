package main

import (
	"encoding/csv"
	"encoding/hex"
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
	var agent string
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create --agent NAME [--ttl 1h]",
		Short: "Create a one-time join token for an agent (printed once, stored only hashed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				resp, err := c.Admin().CreateJoinToken(cmd.Context(), &tier0v1.CreateJoinTokenRequest{Agent: agent, TtlSeconds: int64(ttl / time.Second)})
				if err != nil {
					return cliErr(err)
				}
				fmt.Fprintln(cmd.OutOrStdout(), resp.GetToken())
				fmt.Fprintf(cmd.ErrOrStderr(), "join token for agent %q, valid until %s, works once\n", agent, time.Unix(resp.GetExpiresAt(), 0).UTC().Format(time.RFC3339))
				return nil
			})
		},
	}
	create.Flags().StringVar(&agent, "agent", "", "agent name (its SVID will be spiffe://TD/tier0/agent/NAME)")
	create.Flags().DurationVar(&ttl, "ttl", time.Hour, "token validity")
	_ = create.MarkFlagRequired("agent")
	cmd.AddCommand(create)
	return cmd
}

func newEntryCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "entry", Short: "Registration entries: which agent may get which SPIFFE ID"}
	var agent, id string
	var ttl time.Duration
	var output string
	var selectors []string
	create := &cobra.Command{
		Use:   "create --agent NAME --spiffe-id ID [--ttl 15m..60m] [--selector unix:uid:N ...]",
		Short: "Grant a SPIFFE ID to an agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, s := range selectors {
				if _, err := ca.ParseSelector(s); err != nil {
					return fmt.Errorf("--selector: %w", err)
				}
			}
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				resp, err := c.Admin().CreateEntry(cmd.Context(), &tier0v1.CreateEntryRequest{Agent: agent, SpiffeId: id, TtlSeconds: int64(ttl / time.Second), Selectors: selectors})
				if err != nil {
					return cliErr(err)
				}
				return printEntries(cmd.OutOrStdout(), output, []*tier0v1.Entry{resp.GetEntry()})
			})
		},
	}
	create.Flags().StringVar(&agent, "agent", "", "agent name")
	create.Flags().StringVar(&id, "spiffe-id", "", "SPIFFE ID to grant, in this trust domain")
	create.Flags().DurationVar(&ttl, "ttl", 0, "SVID lifetime for this entry, 15m..60m (default 30m)")
	create.Flags().StringArrayVar(&selectors, "selector", nil, "workload selector, repeatable, all must match: unix:uid:N, unix:gid:N, unix:path:/abs/path (none: for `tier0-agent fetch` only)")
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
	cmd.PersistentFlags().StringVarP(&output, "output", "o", "table", "output: table or json")
	cmd.AddCommand(create, list, del)
	return cmd
}

func printEntries(w io.Writer, format string, entries []*tier0v1.Entry) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		for _, e := range entries {
			if err := enc.Encode(map[string]any{"id": e.GetId(), "agent": e.GetAgent(), "spiffe_id": e.GetSpiffeId(), "ttl": (time.Duration(e.GetTtlSeconds()) * time.Second).String(), "selectors": e.GetSelectors()}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGENT\tSPIFFE ID\tTTL\tSELECTORS")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.GetId(), e.GetAgent(), e.GetSpiffeId(), time.Duration(e.GetTtlSeconds())*time.Second, strings.Join(e.GetSelectors(), ","))
	}
	return tw.Flush()
}

func newAuditCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Compliance: query issuance records"}
	var req tier0v1.ListRecordsRequest
	var since, output string
	list := &cobra.Command{
		Use:   "list [--spiffe-id X] [--agent A] [--serial S] [--since RFC3339|DURATION] [--limit N]",
		Short: "List issued SVIDs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since != "" {
				t, err := parseSince(since, time.Now())
				if err != nil {
					return err
				}
				req.Since = t.Unix()
			}
			return withOperator(cmd, g, "auditor", func(c *client.Client) error {
				resp, err := c.Audit().ListRecords(cmd.Context(), &req)
				if err != nil {
					return cliErr(err)
				}
				return printRecords(cmd.OutOrStdout(), output, resp.GetRecords())
			})
		},
	}
	fl := list.Flags()
	fl.StringVar(&req.SpiffeId, "spiffe-id", "", "only this SPIFFE ID")
	fl.StringVar(&req.AgentId, "agent", "", "only SVIDs requested by this agent SPIFFE ID")
	fl.StringVar(&req.Serial, "serial", "", "only this serial (hex)")
	fl.StringVar(&since, "since", "", "only SVIDs with NotBefore after this time (RFC 3339) or this long ago (e.g. 1h)")
	fl.Uint32Var(&req.Limit, "limit", 100, "at most this many records (max 10000)")
	fl.StringVarP(&output, "output", "o", "table", "output: table, json (JSON lines) or csv")
	cmd.AddCommand(list)
	return cmd
}

func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--since %q: a duration must be positive", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q: want RFC 3339 (2026-01-02T15:04:05Z) or a duration (1h)", s)
	}
	return t, nil
}

func printRecords(w io.Writer, format string, recs []*tier0v1.IssuanceRecord) error {
	ts := func(us int64) string { return time.UnixMicro(us).UTC().Format(time.RFC3339) }
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		for _, r := range recs {
			if err := enc.Encode(map[string]any{
				"seq": r.GetSeq(), "serial": r.GetSerial(), "spiffe_id": r.GetSpiffeId(), "agent_id": r.GetAgentId(),
				"not_before": ts(r.GetNotBefore()), "not_after": ts(r.GetNotAfter()), "issuer_key_id": r.GetIssuerKeyId(),
				"public_key_sha256": r.GetPublicKeySha256(), "node_id": r.GetNodeId(), "committed_at": ts(r.GetCommittedAt()),
				"hash": hex.EncodeToString(r.GetHash()),
			}); err != nil {
				return err
			}
		}
		return nil
	case "csv":
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"seq", "serial", "spiffe_id", "agent_id", "not_before", "not_after", "issuer_key_id", "node_id", "hash"})
		for _, r := range recs {
			_ = cw.Write([]string{fmt.Sprint(r.GetSeq()), r.GetSerial(), r.GetSpiffeId(), r.GetAgentId(), ts(r.GetNotBefore()), ts(r.GetNotAfter()), r.GetIssuerKeyId(), r.GetNodeId(), hex.EncodeToString(r.GetHash())})
		}
		cw.Flush()
		return cw.Error()
	case "table", "":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tSERIAL\tSPIFFE ID\tAGENT\tNOT AFTER\tNODE")
		for _, r := range recs {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", r.GetSeq(), r.GetSerial(), r.GetSpiffeId(), r.GetAgentId(), ts(r.GetNotAfter()), r.GetNodeId())
		}
		return tw.Flush()
	default:
		return fmt.Errorf("--output %q: want table, json or csv", format)
	}
}
