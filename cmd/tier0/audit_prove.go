package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/internal/server"
	"github.com/tier0-ca/tier0/internal/tlog"
	"github.com/tier0-ca/tier0/storage"
)

// newAuditProveCmd: an inclusion proof for one certificate, or a
// consistency proof between two tree checkpoints, from the record store.
func newAuditProveCmd() *cobra.Command {
	var dsn, serialArg, out, output string
	var from, to int64
	cmd := &cobra.Command{
		Use:   "prove --store DSN (--serial S | --from N [--to M]) [--out FILE]",
		Short: "Prove that a certificate is in the log (inclusion) or that one tree checkpoint extends another (consistency)",
		Long: `prove reads the record store and its signed Merkle tree checkpoints (C2SP
tlog-checkpoint notes the leader signs with the audit key) and writes a proof file
(JSON, docs/AUDIT.md) that 'tier0 audit verify-proof' checks with the trust bundle alone.
--serial proves the record with that serial (any spelling) against the newest tree
checkpoint; --from N --to M proves that the tree of size M extends the tree of size N
(both must be stored tree checkpoints; --to 0: the newest). It runs against the store
directly (--store); proofs through a server are not available yet.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dsn == "" {
				return errors.New("--store DSN is required: proofs through a server are not available yet")
			}
			if (serialArg == "") == (from == 0) {
				return errors.New("give either --serial S or --from N [--to M]")
			}
			ctx := cmd.Context()
			ts, closeStore, err := openTreeStore(ctx, dsn)
			if err != nil {
				return err
			}
			defer closeStore()
			p := tlog.Prover{Store: ts}
			var proof *tlog.Proof
			if serialArg != "" {
				recs, err := ts.Query(ctx, storage.Filter{Serial: serialArg, Limit: 1})
				if err != nil {
					return err
				}
				if len(recs) == 0 {
					return fmt.Errorf("no record with serial %s", serialArg)
				}
				proof, err = p.Inclusion(ctx, recs[0].Seq)
				if err != nil {
					return err
				}
			} else if proof, err = p.Consistency(ctx, from, to); err != nil {
				return err
			}
			raw, err := json.MarshalIndent(proof, "", "  ")
			if err != nil {
				return err
			}
			raw = append(raw, '\n')
			if out == "" || out == "-" {
				_, err = cmd.OutOrStdout().Write(raw)
				return err
			}
			return os.WriteFile(out, raw, 0o644) //nolint:gosec // a proof is public
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dsn, "store", "", "record store DSN (postgres://... or sqlite:PATH)")
	fl.StringVar(&serialArg, "serial", "", "prove inclusion of the record with this serial (any spelling: hex, 04:a7:.., dec:123)")
	fl.Int64Var(&from, "from", 0, "consistency: the older tree size (a stored tree checkpoint)")
	fl.Int64Var(&to, "to", 0, "consistency: the newer tree size (0: the newest tree checkpoint)")
	fl.StringVar(&out, "out", "", "write the proof to FILE (default stdout)")
	outputFlag(fl, &output, "json (the proof file; the only format)", outJSON)
	return cmd
}

// newAuditVerifyProofCmd checks a proof file with only the bundle.
func newAuditVerifyProofCmd() *cobra.Command {
	var bundles []string
	var certFile, output string
	cmd := &cobra.Command{
		Use:   "verify-proof FILE --bundle bundle.pem [--cert svid.pem]",
		Short: "Check a proof from 'tier0 audit prove' with only the trust bundle",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(bundles) == 0 {
				return errors.New("--bundle FILE is required")
			}
			var roots []*x509.Certificate
			for _, b := range bundles {
				rs, err := loadPEMCerts(b)
				if err != nil {
					return err
				}
				roots = append(roots, rs...)
			}
			raw, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			var p tlog.Proof
			if err := json.Unmarshal(raw, &p); err != nil {
				return fmt.Errorf("%s: not a proof file: %w", args[0], err)
			}
			c, err := p.Verify(roots)
			if err != nil {
				return fmt.Errorf("proof does NOT verify: %w", err)
			}
			w := cmd.OutOrStdout()
			if p.Kind == tlog.KindInclusion {
				if certFile != "" {
					certs, err := loadPEMCerts(certFile)
					if err != nil {
						return err
					}
					if string(certs[0].Raw) != string(p.Record.CertDER) {
						return fmt.Errorf("proof verifies, but for another certificate than %s (record %d, serial %s)", certFile, p.Record.Seq, p.Record.Serial)
					}
				}
				return printJSONOr(w, output, map[string]any{"ok": true, "kind": p.Kind, "seq": p.Record.Seq, "serial": canonicalSerial(p.Record.Serial),
					"spiffe_id": p.Record.SPIFFEID, "leaf": p.Index, "origin": c.Origin, "size": c.Size, "root": fmt.Sprintf("%x", c.Root[:])}, func(w io.Writer) {
					fmt.Fprintf(w, "OK: record %d (serial %s, %s) is leaf %d of the log %s of size %d, root %x\n",
						p.Record.Seq, canonicalSerial(p.Record.Serial), p.Record.SPIFFEID, p.Index, c.Origin, c.Size, c.Root[:])
				})
			}
			old, _ := tlog.ParseCheckpoint(tlog.NoteText([]byte(p.OldCheckpoint)))
			return printJSONOr(w, output, map[string]any{"ok": true, "kind": p.Kind, "origin": c.Origin, "size": c.Size, "root": fmt.Sprintf("%x", c.Root[:]),
				"old_size": old.Size, "old_root": fmt.Sprintf("%x", old.Root[:])}, func(w io.Writer) {
				fmt.Fprintf(w, "OK: the tree of size %d (root %x) extends the tree of size %d (root %x) of the log %s\n",
					c.Size, c.Root[:], old.Size, old.Root[:], c.Origin)
			})
		},
	}
	cmd.Flags().StringArrayVar(&bundles, "bundle", nil, "trust bundle PEM file (repeatable)")
	cmd.Flags().StringVar(&certFile, "cert", "", "inclusion: also check that the proved record is this certificate (PEM)")
	outputFlag(cmd.Flags(), &output, "text or json", outText, outJSON)
	return cmd
}

// treeStore is a record store that keeps tree checkpoints: what proofs and
// witnesses read.
type treeStore interface {
	storage.AuditStore
	tlog.Ranger
	storage.TreeStore
}

// openTreeStore opens the record store at dsn for proofs and witnessing.
func openTreeStore(ctx context.Context, dsn string) (treeStore, func(), error) {
	st, err := server.OpenStore(ctx, dsn)
	if err != nil {
		return nil, nil, err
	}
	ts, ok := st.(treeStore)
	if !ok {
		st.Close()
		return nil, nil, fmt.Errorf("the store %T keeps no tree checkpoints", st)
	}
	return ts, func() { st.Close() }, nil
}
