package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/internal/auditcli"
	"github.com/tier0-ca/tier0/internal/auditremote"
)

// newAuditProveCmd: an inclusion proof for one certificate, or a
// consistency proof between two tree checkpoints, from the record store.
func newAuditProveCmd(g *globalFlags) *cobra.Command {
	var dsn, serialArg, out, output string
	var from, to int64
	cmd := &cobra.Command{
		Use:   "prove (--serial S | --from N [--to M]) [--out FILE] [--store DSN]",
		Short: "Prove that a certificate is in the log (inclusion) or that one tree checkpoint extends another (consistency)",
		Long: `prove asks the server (auditor credential) for a proof over the record store's signed
Merkle tree checkpoints (C2SP tlog-checkpoint notes the leader signs with the audit key)
and writes the proof file (JSON, docs/AUDIT.md) that 'tier0 audit verify-proof' checks
with the trust bundle alone. --serial proves the record with that serial (any spelling)
against the newest tree checkpoint; --from N --to M proves that the tree of size M
extends the tree of size N (both must be stored tree checkpoints; --to 0: the newest).
With --store it reads the record store directly instead, with no server.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (serialArg == "") == (from == 0) {
				return errors.New("give either --serial S or --from N [--to M]")
			}
			if dsn == "" {
				return proveRemote(cmd, g, serialArg, from, to, out) // auditlog_cmd.go
			}
			ts, closeStore, err := auditcli.OpenTreeStore(cmd.Context(), dsn)
			if err != nil {
				return err
			}
			defer closeStore()
			raw, err := auditcli.Prove(cmd.Context(), ts, serialArg, from, to)
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err = cmd.OutOrStdout().Write(raw)
				return err
			}
			return os.WriteFile(out, raw, 0o644) //nolint:gosec // a proof is public
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dsn, "store", "", "read the record store DSN (postgres://... or sqlite:PATH) directly instead of the server")
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
	var logKeys []string
	cmd := &cobra.Command{
		Use:   "verify-proof FILE --bundle bundle.pem [--log-key audit.pem] [--cert svid.pem]",
		Short: "Check a proof from 'tier0 audit prove' with only the trust bundle",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(bundles) == 0 {
				return errors.New("--bundle FILE is required")
			}
			roots, err := auditcli.LoadBundles(bundles)
			if err != nil {
				return err
			}
			raw, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			res, err := auditcli.CheckProof(args[0], raw, roots, certFile)
			if err != nil {
				return err
			}
			if len(logKeys) > 0 {
				certs, err := auditcli.LoadBundles(logKeys)
				if err != nil {
					return fmt.Errorf("--log-key: %w", err)
				}
				if err := auditremote.CheckLogKey(&res.Proof, certs...); err != nil {
					return fmt.Errorf("proof does NOT verify: %w", err)
				}
			}
			return res.Write(cmd.OutOrStdout(), output)
		},
	}
	cmd.Flags().StringArrayVar(&bundles, "bundle", nil, "trust bundle PEM file (repeatable)")
	cmd.Flags().StringArrayVar(&logKeys, "log-key", nil, "also require that the checkpoints are signed by the key of this audit key certificate (PEM, repeatable; 'tier0 audit checkpoint --cert-out')")
	cmd.Flags().StringVar(&certFile, "cert", "", "inclusion: also check that the proved record is this certificate (PEM)")
	outputFlag(cmd.Flags(), &output, "text or json", outText, outJSON)
	return cmd
}
