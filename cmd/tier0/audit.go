package main

import (
	"context"
	"crypto/x509"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/tier0-ca/tier0/api"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/server"
	"github.com/tier0-ca/tier0/internal/server/decisions"
	"github.com/tier0-ca/tier0/storage"
	"github.com/tier0-ca/tier0/storage/serial"
)

// Compliance commands (auditor role, read-only): docs/AUDIT.md.

func newAuditCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Compliance: query and verify issuance records and authorization decisions"}
	cmd.AddCommand(newAuditListCmd(g, "list"), newAuditShowCmd(g), newAuditListCmd(g, "export"),
		newAuditVerifyCmd(g), newAuditDecisionsCmd(g), newAuditCheckSerialsCmd(g),
		newAuditProveCmd(), newAuditVerifyProofCmd())
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
	for _, x := range []struct {
		name string
		in   string
		out  *int64
	}{{"since", f.since, &f.req.Since}, {"until", f.until, &f.req.Until},
		{"committed-since", f.committedSince, &f.req.CommittedSince}, {"committed-until", f.committedUntil, &f.req.CommittedUntil}} {
		if x.in == "" {
			continue
		}
		t, err := parseTimeFlag(x.name, x.in, now)
		if err != nil {
			return err
		}
		*x.out = t.Unix()
	}
	return nil
}

func newAuditListCmd(g *globalFlags, verb string) *cobra.Command {
	f := &recordFlags{}
	cmd := &cobra.Command{
		Use:   verb + " [--spiffe-id X] [--agent A] [--serial S] [--issuer KID] [--since T] [--until T] [-o table|json|csv]",
		Short: "List issued SVIDs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.verifiable.on { // audit_export.go
				return f.verifiable.run(cmd)
			}
			if err := f.build(g, time.Now()); err != nil {
				return err
			}
			c, err := dialOperator(cmd.Context(), g, "auditor")
			if err != nil {
				return err
			}
			defer c.Close()
			out := newRecordPrinter(cmd.OutOrStdout(), f.output)
			if verb == "list" {
				resp, err := c.Audit().ListRecords(cmd.Context(), &f.req)
				if err != nil {
					return cliErr(err)
				}
				out.print(resp.GetRecords())
				return out.flush()
			}
			// export: page through everything that matches, newest first.
			total, want := uint32(0), f.req.Limit
			for {
				req := proto.Clone(&f.req).(*tier0v1.ListRecordsRequest)
				req.Limit = storage.MaxLimit
				if want > 0 {
					req.Limit = min(storage.MaxLimit, want-total)
				}
				resp, err := c.Audit().ListRecords(cmd.Context(), req)
				if err != nil {
					return cliErr(err)
				}
				recs := resp.GetRecords()
				out.print(recs)
				total += uint32(len(recs))
				if len(recs) < int(req.Limit) || (want > 0 && total >= want) {
					break
				}
				f.req.BeforeSeq = recs[len(recs)-1].GetSeq()
			}
			if err := out.flush(); err != nil {
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
	var output string
	cmd := &cobra.Command{
		Use:   "show SERIAL",
		Short: "Show one issuance record in full, with its certificate (PEM) and chain hashes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
			m := recordMap(r)
			m["prev_hash"] = hex.EncodeToString(r.GetPrevHash())
			if len(r.GetCertDer()) > 0 {
				m["certificate"] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.GetCertDer()}))
			} else {
				m["certificate"] = "(none: JWT-SVID, serial is the jti)"
			}
			if output == outJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(m)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			for _, k := range []string{"seq", "kind", "serial", "serial_hex", "spiffe_id", "agent_id", "not_before", "not_after", "issuer_key_id",
				"public_key_sha256", "node_id", "committed_at", "prev_hash", "hash"} {
				fmt.Fprintf(tw, "%s:\t%v\n", k, m[k])
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), m["certificate"], "\n")
			return err
		},
	}
	outputFlag(cmd.Flags(), &output, "output: table or json", outTable, outJSON)
	return cmd
}

func newAuditVerifyCmd(g *globalFlags) *cobra.Command {
	var from, to uint64
	var dsn, output string
	var bundles []string
	var allowTail bool
	var exportFile string
	var wf witnessFlags
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
			if exportFile != "" { // audit_export.go
				r, err := verifyExportFile(cmd, exportFile, bundles, wf)
				if err != nil {
					return err
				}
				res = r
			} else if dsn != "" || len(bundles) > 0 {
				if dsn == "" || len(bundles) == 0 {
					return errors.New("offline verify needs both --store DSN and --bundle FILE")
				}
				r, err := verifyOffline(cmd.Context(), dsn, bundles, from, to)
				if err != nil {
					return err
				}
				res = r
			} else {
				c, err := dialOperator(cmd.Context(), g, "auditor")
				if err != nil {
					return err
				}
				defer c.Close()
				if res, err = c.Audit().VerifyChain(cmd.Context(), &tier0v1.VerifyChainRequest{FromSeq: from, ToSeq: to}); err != nil {
					return cliErr(err)
				}
			}
			printVerify(cmd.OutOrStdout(), output, res, time.Since(start))
			if !res.GetOk() {
				return fmt.Errorf("audit verify FAILED: seq %d: %s", res.GetFirstBadSeq(), res.GetProblem())
			}
			if lo, hi := unverifiedTail(res); hi != 0 && !allowTail {
				return fmt.Errorf("audit verify: records %d..%d are newer than the newest signed checkpoint (hash chain only): unverified; wait for the next checkpoint or pass --allow-unverified-tail", lo, hi)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.Uint64Var(&from, "from", 0, "first seq to verify (the chain starts at the last checkpoint at or before it)")
	fl.Uint64Var(&to, "to", 0, "last seq to verify (0: the last stored)")
	fl.StringVar(&dsn, "store", "", "offline: record store DSN (postgres://... or sqlite:PATH)")
	fl.StringArrayVar(&bundles, "bundle", nil, "offline: trust bundle PEM file (repeatable: keep bundles of retired roots for old checkpoints)")
	wf.register(fl)
	fl.StringVar(&exportFile, "export", "", "verify a verifiable export FILE ('audit export --verifiable') with --bundle: no server, no database")
	fl.BoolVar(&allowTail, "allow-unverified-tail", false, "exit 0 even when records newer than the newest signed checkpoint (verified by the hash chain only) remain")
	outputFlag(fl, &output, "output: table or json", outTable, outJSON)
	return cmd
}

func verifyOffline(ctx context.Context, dsn string, bundles []string, from, to uint64) (*tier0v1.VerifyChainResponse, error) {
	var roots []*x509.Certificate
	for _, b := range bundles {
		rs, err := loadPEMCerts(b)
		if err != nil {
			return nil, err
		}
		roots = append(roots, rs...)
	}
	store, err := server.OpenStore(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	res, err := storage.VerifyAuditWith(ctx, store, storage.AuditOptions{From: from, To: to, Roots: roots, Certs: storage.NewCertChecker(roots, nil)})
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return api.VerifyResultToPB(res), nil
}

func loadPEMCerts(path string) ([]*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--bundle: %w", err)
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, raw = pem.Decode(raw)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("--bundle %s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--bundle %s: no PEM certificates", path)
	}
	return out, nil
}

// unverifiedTail returns the records of an intact verify that no signed
// checkpoint covers (0, 0: none).
func unverifiedTail(r *tier0v1.VerifyChainResponse) (lo, hi uint64) {
	if !r.GetOk() || r.GetToSeq() <= r.GetLastCheckpointSeq() || r.GetToSeq() < r.GetFromSeq() || r.GetChecked() == 0 {
		return 0, 0
	}
	return max(r.GetLastCheckpointSeq()+1, r.GetFromSeq()), r.GetToSeq()
}

func printVerify(w io.Writer, format string, r *tier0v1.VerifyChainResponse, took time.Duration) {
	if format == outJSON {
		lo, hi := unverifiedTail(r)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"ok": r.GetOk(), "from": r.GetFromSeq(), "to": r.GetToSeq(), "checked": r.GetChecked(),
			"first_bad_seq": r.GetFirstBadSeq(), "problem": r.GetProblem(), "detail": r.GetDetail(),
			"anchor_seq": r.GetAnchorSeq(), "checkpoints": r.GetCheckpoints(), "last_checkpoint_seq": r.GetLastCheckpointSeq(),
			"head": hex.EncodeToString(r.GetHead()), "seconds": took.Seconds(),
			"unverified_from": lo, "unverified_to": hi,
		})
		return
	}
	if r.GetOk() {
		fmt.Fprintf(w, "OK: records %d..%d verified (%d records, %d signed checkpoints, last at seq %d) in %s\n",
			r.GetFromSeq(), r.GetToSeq(), r.GetChecked(), r.GetCheckpoints(), r.GetLastCheckpointSeq(), took.Round(time.Millisecond))
		if r.GetAnchorSeq() != 0 {
			fmt.Fprintf(w, "chain verified from the signed checkpoint at seq %d\n", r.GetAnchorSeq())
		}
		if lo, hi := unverifiedTail(r); hi != 0 {
			fmt.Fprintf(w, "UNVERIFIED: records %d..%d are newer than the newest signed checkpoint (hash chain only)\n", lo, hi)
		}
		fmt.Fprintf(w, "head: %x\n", r.GetHead())
		return
	}
	fmt.Fprintf(w, "FAILED: first bad seq %d: %s\n", r.GetFirstBadSeq(), r.GetProblem())
	if r.GetDetail() != "" {
		fmt.Fprintf(w, "  %s\n", r.GetDetail())
	}
	fmt.Fprintf(w, "  %d records verified before it; %d checkpoints verified\n", r.GetChecked(), r.GetCheckpoints())
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
			now := time.Now()
			for _, x := range []struct {
				name, in string
				out      *int64
			}{{"since", since, &req.Since}, {"until", until, &req.Until}} {
				if x.in == "" {
					continue
				}
				t, err := parseTimeFlag(x.name, x.in, now)
				if err != nil {
					return err
				}
				*x.out = t.Unix()
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
			return printDecisions(cmd.OutOrStdout(), output, resp.GetDecisions())
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

func printDecisions(w io.Writer, format string, ds []*tier0v1.AuthzDecision) error {
	ts := func(us int64) string { return time.UnixMicro(us).UTC().Format(time.RFC3339Nano) }
	verdict := func(d *tier0v1.AuthzDecision) string {
		switch {
		case d.GetAllowed():
			return "allow"
		case strings.HasPrefix(d.GetReason(), decisions.FailedPrefix):
			return "fail" // allowed, then not issued (signer, journal)
		}
		return "deny"
	}
	switch format {
	case outJSON:
		enc := json.NewEncoder(w)
		for _, d := range ds {
			if err := enc.Encode(map[string]any{"id": d.GetId(), "at": ts(d.GetAt()), "node_id": d.GetNodeId(), "caller": d.GetCaller(),
				"requested": d.GetRequested(), "decision": verdict(d), "reason": d.GetReason()}); err != nil {
				return err
			}
		}
		return nil
	case outCSV:
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"id", "at", "node_id", "caller", "requested", "decision", "reason"})
		for _, d := range ds {
			_ = cw.Write([]string{fmt.Sprint(d.GetId()), ts(d.GetAt()), d.GetNodeId(), d.GetCaller(), d.GetRequested(), verdict(d), d.GetReason()})
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tDECISION\tCALLER\tREQUESTED\tREASON")
	for _, d := range ds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ts(d.GetAt()), verdict(d), d.GetCaller(), d.GetRequested(), d.GetReason())
	}
	return tw.Flush()
}

// parseTimeFlag reads RFC 3339 or a positive duration ago.
func parseTimeFlag(name, s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--%s %q: a duration must be positive", name, s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--%s %q: want RFC 3339 (2026-01-02T15:04:05Z) or a duration (1h)", name, s)
	}
	if t.Year() < 1970 || t.Year() > 9999 {
		return time.Time{}, fmt.Errorf("--%s %q: outside years 1970-9999", name, s)
	}
	return t, nil
}

func recordMap(r *tier0v1.IssuanceRecord) map[string]any {
	ts := func(us int64) string { return time.UnixMicro(us).UTC().Format(time.RFC3339Nano) }
	m := map[string]any{
		"seq": r.GetSeq(), "serial": r.GetSerial(), "spiffe_id": r.GetSpiffeId(), "agent_id": r.GetAgentId(),
		"not_before": ts(r.GetNotBefore()), "not_after": ts(r.GetNotAfter()), "issuer_key_id": r.GetIssuerKeyId(),
		"public_key_sha256": r.GetPublicKeySha256(), "node_id": r.GetNodeId(), "committed_at": ts(r.GetCommittedAt()),
		"hash": hex.EncodeToString(r.GetHash()), "jwt": len(r.GetCertDer()) == 0,
		"kind": storage.KindOf(r.GetIssuerKeyId()), "serial_hex": canonicalSerial(r.GetSerial()),
		"jti": "", "jwt_kid": "", "jwt_token_sha256": "",
	}
	if m["kind"] == storage.KindJWT { // a JWT-SVID record: serial is the jti, the key is the signing key
		m["jti"], m["jwt_kid"], m["jwt_token_sha256"] = r.GetSerial(), strings.TrimPrefix(r.GetIssuerKeyId(), "jwt:"), r.GetPublicKeySha256()
	}
	return m
}

// canonicalSerial is the serial as openssl prints it (storage/serial), or
// as stored when it does not parse.
func canonicalSerial(s string) string {
	if c, err := serial.Canonical(s); err == nil {
		return c
	}
	return s
}

// recordPrinter writes records page by page in one format.
type recordPrinter struct {
	format string
	w      io.Writer
	enc    *json.Encoder
	cw     *csv.Writer
	tw     *tabwriter.Writer
	err    error
}

func newRecordPrinter(w io.Writer, format string) *recordPrinter {
	p := &recordPrinter{format: format, w: w}
	switch format {
	case outJSON:
		p.enc = json.NewEncoder(w)
	case outCSV:
		p.cw = csv.NewWriter(w)
		p.err = p.cw.Write([]string{"seq", "serial", "spiffe_id", "agent_id", "not_before", "not_after", "issuer_key_id", "node_id", "committed_at", "hash",
			"kind", "serial_hex", "public_key_sha256", "jti", "jwt_kid", "jwt_token_sha256"})
	default:
		p.tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(p.tw, "SEQ\tSERIAL\tSPIFFE ID\tAGENT\tNOT AFTER\tNODE\tKIND")
	}
	return p
}

func (p *recordPrinter) print(recs []*tier0v1.IssuanceRecord) {
	for _, r := range recs {
		if p.err != nil {
			return
		}
		m := recordMap(r)
		switch {
		case p.enc != nil:
			p.err = p.enc.Encode(m)
		case p.cw != nil:
			p.err = p.cw.Write([]string{fmt.Sprint(m["seq"]), r.GetSerial(), r.GetSpiffeId(), r.GetAgentId(), m["not_before"].(string),
				m["not_after"].(string), r.GetIssuerKeyId(), r.GetNodeId(), m["committed_at"].(string), m["hash"].(string),
				m["kind"].(string), m["serial_hex"].(string), r.GetPublicKeySha256(), m["jti"].(string), m["jwt_kid"].(string), m["jwt_token_sha256"].(string)})
		default:
			fmt.Fprintf(p.tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.GetSeq(), r.GetSerial(), r.GetSpiffeId(), r.GetAgentId(), m["not_after"], r.GetNodeId(), m["kind"])
		}
	}
}

func (p *recordPrinter) flush() error {
	if p.err != nil {
		return p.err
	}
	switch {
	case p.cw != nil:
		p.cw.Flush()
		return p.cw.Error()
	case p.tw != nil:
		return p.tw.Flush()
	}
	return nil
}
