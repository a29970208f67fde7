package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/auditcli"
)

// Compliance commands (auditor role, read-only): docs/AUDIT.md.

func newAuditCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Compliance: query and verify issuance records and authorization decisions"}
	cmd.AddCommand(newAuditListCmd(g, "list"), newAuditShowCmd(g), newAuditListCmd(g, "export"),
		newAuditVerifyCmd(g), newAuditDecisionsCmd(g), newAuditCheckSerialsCmd(g),
		newAuditProveCmd(g), newAuditVerifyProofCmd(), newAuditCheckpointCmd(g))
	return cmd
}

// recordFlags are the record filters shared by list and export.
type recordFlags struct {
	req                            tier0v1.ListRecordsRequest
	since, until                   string
	committedSince, committedUntil string
	agent                          string
	output                         string
	verifiable                     verifiableFlags // export only (audit_export.go)
}

func (f *recordFlags) register(cmd *cobra.Command, defLimit uint32) {
	fl := cmd.Flags()
	fl.StringVar(&f.req.SpiffeId, "spiffe-id", "", "only this SPIFFE ID")
	agentFlag(fl, &f.agent, "only SVIDs requested by this agent")
	fl.StringVar(&f.req.Serial, "serial", "", "only this serial, any spelling: hex in any case with or without leading zeros or colons (04:a7:..), 0x.., dec:123 (for a JWT-SVID its jti)")
	fl.StringVar(&f.req.IssuerKeyId, "issuer", "", "only SVIDs signed by this issuer (hex SubjectKeyId)")
	fl.StringVar(&f.req.Kind, "kind", "", "only records of this kind: x509, jwt or admin (admin events: every state change, with its actor)")
	fl.StringVar(&f.since, "since", "", "only SVIDs with NotBefore at or after this time (RFC 3339) or this long ago (e.g. 24h)")
	fl.StringVar(&f.until, "until", "", "only SVIDs with NotBefore before this time (RFC 3339) or this long ago")
	fl.StringVar(&f.committedSince, "committed-since", "", "only records committed at or after this time (RFC 3339) or this long ago (--since filters on the backdated NotBefore)")
	fl.StringVar(&f.committedUntil, "committed-until", "", "only records committed before this time (RFC 3339) or this long ago")
	fl.Uint32Var(&f.req.Limit, "limit", defLimit, "at most this many records (list: max 10000; export: 0 = all)")
	outputFlag(fl, &f.output, "output: table, json (JSON lines) or csv", outTable, outJSON, outCSV)
}

func (f *recordFlags) build(g *globalFlags, now time.Time) error {
	var err error
	if f.req.AgentId, err = g.agentID(f.agent); err != nil {
		return err
	}
	return auditcli.ParseTimes(now, auditcli.TimeFlag{Name: "since", In: f.since, Out: &f.req.Since},
		auditcli.TimeFlag{Name: "until", In: f.until, Out: &f.req.Until},
		auditcli.TimeFlag{Name: "committed-since", In: f.committedSince, Out: &f.req.CommittedSince},
		auditcli.TimeFlag{Name: "committed-until", In: f.committedUntil, Out: &f.req.CommittedUntil})
}

func newAuditListCmd(g *globalFlags, verb string) *cobra.Command {
	f := &recordFlags{}
	cmd := &cobra.Command{
		Use:   verb + " [--spiffe-id X] [--agent A] [--serial S] [--issuer KID] [--since T] [--until T] [-o table|json|csv]",
		Short: "List issued SVIDs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.verifiable.on { // audit_export.go
				return f.verifiable.run(cmd, g)
			}
			if err := f.build(g, time.Now()); err != nil {
				return err
			}
			c, err := dialOperator(cmd.Context(), g, "auditor")
			if err != nil {
				return err
			}
			defer c.Close()
			out := auditcli.NewRecordPrinter(cmd.OutOrStdout(), f.output)
			if verb == "list" {
				resp, err := c.Audit().ListRecords(cmd.Context(), &f.req)
				if err != nil {
					return cliErr(err)
				}
				out.Print(resp.GetRecords())
				return out.Flush()
			}
			total, err := auditcli.ExportAll(cmd.Context(), c.Audit(), &f.req, out) // every page, newest first
			if err != nil {
				return err
			}
			if err := out.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "exported %d records\n", total)
			return nil
		},
	}
	def := uint32(100)
	if verb == "export" {
		cmd.Short = "Export every matching record (all pages), newest first; --verifiable: the self-contained verifiable export"
		def = 0
		f.verifiable.register(cmd)
	}
	f.register(cmd, def)
	return cmd
}

func newAuditShowCmd(g *globalFlags) *cobra.Command {
	var output, serialFlag string
	cmd := &cobra.Command{
		Use:   "show SERIAL | --serial SERIAL",
		Short: "Show one record in full: its certificate (PEM) with its chain up to the bundle's root, and its chain hashes",
		Args:  cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args = append(args, serialFlag); len(args) == 2 && args[1] != "" || args[0] == "" {
				return fmt.Errorf("give one serial, as an argument or with --serial, not both")
			}
			c, err := dialOperator(cmd.Context(), g, "auditor")
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Audit().ListRecords(cmd.Context(), &tier0v1.ListRecordsRequest{Serial: args[0], Limit: 1})
			if err != nil {
				return cliErr(err)
			}
			if len(resp.GetRecords()) == 0 {
				return fmt.Errorf("no record with serial %s", args[0])
			}
			r := resp.GetRecords()[0]
			return auditcli.WriteRecordChain(cmd.OutOrStdout(), output, r, chainOf(cmd.Context(), c, r)) // audit_show_chain.go
		},
	}
	outputFlag(cmd.Flags(), &output, "output: table or json", outTable, outJSON)
	cmd.Flags().StringVar(&serialFlag, "serial", "", "the serial, any spelling (instead of the argument)")
	return cmd
}

func newAuditVerifyCmd(g *globalFlags) *cobra.Command {
	var from, to uint64
	var dsn, output string
	var bundles []string
	var allowTail bool
	var exportFile string
	var wit auditcli.Witnesses
	cmd := &cobra.Command{
		Use:   "verify [--from SEQ] [--to SEQ] [--store DSN --bundle FILE]",
		Short: "Recompute the hash chain and check every signed checkpoint; name the first bad seq",
		Long: `Verify recomputes the hash chain over the record store and checks every signed
checkpoint against the trust bundle. Online (default) the server verifies its store;
with --store and --bundle it runs offline, with no server, against the database directly.
It exits non-zero and names the first bad seq and the problem: modified, missing,
inserted, reordered, broken link, forged checkpoint, checkpoint mismatch, missing
checkpoint, certificate mismatch (cert_der disagrees with the serial, SPIFFE ID,
validity, issuer key ID or public key columns), certificate not chaining to the
bundle, or (online) not in journal: a stored record the journal never issued, such
as a correctly chained forged tail. Records newer than the newest signed checkpoint
are covered by the hash chain only: verify reports them as unverified and exits
non-zero unless --allow-unverified-tail.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to != 0 && to < from {
				return fmt.Errorf("--to %d is before --from %d", to, from)
			}
			var res *tier0v1.VerifyChainResponse
			start := time.Now()
			if exportFile != "" || dsn != "" || (len(bundles) > 0 && len(wit.Keys) == 0) {
				switch {
				case exportFile != "" && len(bundles) == 0:
					return errors.New("--export needs --bundle FILE (the auditor's own copy of the trust bundle)")
				case exportFile == "" && (dsn == "" || len(bundles) == 0):
					return errors.New("offline verify needs both --store DSN and --bundle FILE")
				}
				roots, err := auditcli.LoadBundles(bundles)
				if err != nil {
					return err
				}
				if exportFile != "" {
					res, err = auditcli.VerifyExport(cmd.Context(), exportFile, roots, wit, cmd.ErrOrStderr())
				} else {
					res, err = auditcli.VerifyOffline(cmd.Context(), dsn, roots, from, to)
				}
				if err != nil {
					return err
				}
			} else {
				c, err := dialOperator(cmd.Context(), g, "auditor")
				if err != nil {
					return err
				}
				defer c.Close()
				if res, err = c.Audit().VerifyChain(cmd.Context(), &tier0v1.VerifyChainRequest{FromSeq: from, ToSeq: to}); err != nil {
					return cliErr(err)
				}
				if len(wit.Keys) > 0 && res.GetOk() { // auditlog_cmd.go
					if err := requireWitnesses(cmd, g, c, wit.Keys, bundles, wit.Min); err != nil {
						return err
					}
				}
			}
			auditcli.WriteVerify(cmd.OutOrStdout(), output, res, time.Since(start))
			return auditcli.VerdictErr(res, allowTail)
		},
	}
	fl := cmd.Flags()
	fl.Uint64Var(&from, "from", 0, "first seq to verify (the chain starts at the last checkpoint at or before it)")
	fl.Uint64Var(&to, "to", 0, "last seq to verify (0: the last stored)")
	fl.StringVar(&dsn, "store", "", "offline: record store DSN (postgres://... or sqlite:PATH)")
	fl.StringArrayVar(&bundles, "bundle", nil, "offline: trust bundle PEM file (repeatable: keep bundles of retired roots for old checkpoints); online with --witness: the roots that verify the server's checkpoint (default DATA/bundle.pem)")
	fl.StringSliceVar(&wit.Keys, "witness", nil, "require cosignatures of this witness, NAME=KEY (the Ed25519 public key in hex, as 'tier0 witness' prints it; repeatable or comma-separated): online on the server's newest tree checkpoint, with --export on one of the export's")
	fl.StringArrayVar(&wit.Cosigned, "cosigned", nil, "--export: a cosigned checkpoint note from a witness (its DIR/cosigned.note; repeatable; default: the cosignatures stored in the export)")
	fl.IntVar(&wit.Min, "witness-min", 0, "how many of the --witness keys must have cosigned (0: all)")
	fl.IntVar(&wit.Min, "witnesses", 0, "the same as --witness-min")
	_ = fl.MarkDeprecated("witnesses", "use --witness-min")
	fl.StringVar(&exportFile, "export", "", "verify a verifiable export FILE ('audit export --verifiable') with --bundle: no server, no database")
	fl.BoolVar(&allowTail, "allow-unverified-tail", false, "exit 0 even when records newer than the newest signed checkpoint (verified by the hash chain only) remain")
	outputFlag(fl, &output, "output: table or json", outTable, outJSON)
	return cmd
}

func newAuditDecisionsCmd(g *globalFlags) *cobra.Command {
	var req tier0v1.ListDecisionsRequest
	var since, until, agent, output string
	cmd := &cobra.Command{
		Use:   "decisions [--caller ID | --agent NAME] [--requested ID] [--denied] [--since T] [--until T] [-o table|json|csv]",
		Short: "List recorded authorization decisions (allow and deny), newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if agent != "" {
				id, err := g.agentID(agent)
				if err != nil {
					return err
				}
				req.Caller = id
			}
			if err := auditcli.ParseTimes(time.Now(), auditcli.TimeFlag{Name: "since", In: since, Out: &req.Since},
				auditcli.TimeFlag{Name: "until", In: until, Out: &req.Until}); err != nil {
				return err
			}
			c, err := dialOperator(cmd.Context(), g, "auditor")
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Audit().ListDecisions(cmd.Context(), &req)
			if err != nil {
				return cliErr(err)
			}
			return auditcli.WriteDecisions(cmd.OutOrStdout(), output, resp.GetDecisions())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&req.Caller, "caller", "", "only decisions for this caller (SPIFFE ID)")
	agentFlag(fl, &agent, "only decisions for this agent (instead of --caller)")
	cmd.MarkFlagsMutuallyExclusive("caller", "agent")
	fl.StringVar(&req.Requested, "requested", "", "only decisions about this requested SPIFFE ID")
	fl.BoolVar(&req.DeniedOnly, "denied", false, "only denials")
	fl.StringVar(&since, "since", "", "only decisions at or after this time (RFC 3339) or this long ago (e.g. 1h)")
	fl.StringVar(&until, "until", "", "only decisions before this time (RFC 3339) or this long ago")
	fl.Uint32Var(&req.Limit, "limit", 100, "at most this many (max 10000)")
	outputFlag(fl, &output, "output: table, json (JSON lines) or csv", outTable, outJSON, outCSV)
	return cmd
}

// parseTimeFlag reads RFC 3339 or a positive duration ago (storage_cmd.go).
var parseTimeFlag = auditcli.ParseTime
