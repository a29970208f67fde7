package main

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/api/client"
	"github.com/tier0-ca/tier0/internal/auditcli"
	"github.com/tier0-ca/tier0/internal/auditremote"
	"github.com/tier0-ca/tier0/internal/witness"
)

// The audit log through a server (AuditLog service, auditor credential):
// `audit prove`, `audit export --verifiable`, `witness` and `audit verify
// --witness` without --store, and `audit checkpoint`. The logic is in
// internal/auditremote.

// serverRoots are the roots that verify what the server sends: --bundle
// files, else DATA/bundle.pem (the bundle the CLI's connection trusts).
func serverRoots(g *globalFlags, bundles []string) ([]*x509.Certificate, error) {
	if len(bundles) == 0 {
		bundles = []string{filepath.Join(g.dataDir, "bundle.pem")}
	}
	return auditcli.LoadBundles(bundles)
}

// proveRemote writes the proof file the server builds.
func proveRemote(cmd *cobra.Command, g *globalFlags, serial string, from, to int64, out string) error {
	return withOperator(cmd, g, "auditor", func(c *client.Client) error {
		raw, err := auditremote.Prove(cmd.Context(), c.AuditLog(), serial, from, to)
		if err != nil {
			return cliErr(err)
		}
		if out == "" || out == "-" {
			_, err = cmd.OutOrStdout().Write(raw)
			return err
		}
		return os.WriteFile(out, raw, 0o644) //nolint:gosec // a proof is public
	})
}

// exportRemote writes the verifiable export the server streams.
func exportRemote(cmd *cobra.Command, g *globalFlags, out string) error {
	if out == "" {
		return fmt.Errorf("--verifiable needs --out FILE")
	}
	return withOperator(cmd, g, "auditor", func(c *client.Client) error {
		n, err := auditremote.ExportFile(cmd.Context(), c.AuditLog(), out)
		if err != nil {
			return cliErr(err)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "exported %d bytes to %s (verify with: tier0 audit verify --export %s --bundle bundle.pem)\n", n, out, out)
		return nil
	})
}

// witnessRemote runs one witness round against the server and publishes
// the cosignature back to the log.
func witnessRemote(cmd *cobra.Command, g *globalFlags, w *witness.Witness, name string, pub ed25519.PublicKey) ([]byte, error) {
	var note []byte
	err := withOperator(cmd, g, "auditor", func(c *client.Client) error {
		n, resp, err := auditremote.WitnessRound(cmd.Context(), c.AuditLog(), w, name, pub)
		if note = n; err != nil {
			return cliErr(err)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "published to the log: the tree of size %d carries %d witness cosignatures\n", resp.GetSize(), resp.GetCosignatures())
		return nil
	})
	return note, err
}

// requireWitnesses checks, after an online verify, that the newest tree
// checkpoint carries min cosignatures of the witnesses (NAME=KEY).
func requireWitnesses(cmd *cobra.Command, g *globalFlags, c *client.Client, keys, bundles []string, min int) error {
	roots, err := serverRoots(g, bundles)
	if err != nil {
		return err
	}
	got, n, err := auditremote.RequireWitnessSpecs(cmd.Context(), c.AuditLog(), roots, keys, min)
	if err != nil {
		return fmt.Errorf("witnesses: %w", cliErr(err))
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "the newest tree checkpoint (size %d, root %x) is cosigned by %d of %d witnesses: %v\n",
		got.Checkpoint.Size, got.Checkpoint.Root[:], len(got.By), n, got.By)
	return nil
}

// newAuditCheckpointCmd prints a tree checkpoint from the server.
func newAuditCheckpointCmd(g *globalFlags) *cobra.Command {
	var size int64
	var bundles []string
	var certOut, output string
	cmd := &cobra.Command{
		Use:   "checkpoint [--size N] [--cert-out audit.pem] [-o text|json]",
		Short: "Show the log's newest (or --size) signed tree checkpoint with its witness cosignatures, verified against the bundle",
		Long: `checkpoint fetches a signed Merkle tree checkpoint (a C2SP tlog-checkpoint note with
the witnesses' cosignature lines) through the server, checks its signature and that its
audit key certificate chains to the bundle (--bundle, default DATA/bundle.pem), and prints
the note. --cert-out writes that audit key certificate (PEM): the --log-key of
'tier0 witness' and 'tier0 audit verify-proof'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			roots, err := serverRoots(g, bundles)
			if err != nil {
				return err
			}
			return withOperator(cmd, g, "auditor", func(c *client.Client) error {
				cp, err := auditremote.Fetch(cmd.Context(), c.AuditLog(), size, roots)
				if err != nil {
					return cliErr(err)
				}
				if certOut != "" {
					if err := os.WriteFile(certOut, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cp.CertDER}), 0o644); err != nil { //nolint:gosec // a certificate is public
						return err
					}
				}
				if output == outJSON {
					return printJSON(cmd.OutOrStdout(), map[string]any{"origin": cp.Origin, "size": cp.Size, "root": hex.EncodeToString(cp.Root[:]),
						"signed_at": cp.SignedAt.Format(time.RFC3339), "note": string(cp.Note)})
				}
				_, err = cmd.OutOrStdout().Write(cp.Note)
				return err
			})
		},
	}
	fl := cmd.Flags()
	fl.Int64Var(&size, "size", 0, "the tree checkpoint of this size (0: the newest)")
	fl.StringArrayVar(&bundles, "bundle", nil, "trust bundle PEM file (repeatable; default DATA/bundle.pem)")
	fl.StringVar(&certOut, "cert-out", "", "write the audit key certificate that signed it to FILE (PEM)")
	outputFlag(fl, &output, "output: text (the note) or json", outText, outJSON)
	return cmd
}
