package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/internal/auditcli"
)

// verifiableFlags: `audit export --verifiable --out FILE [--store DSN --bundle B]`.
type verifiableFlags struct {
	on      bool
	dsn     string
	bundles []string
	out     string
}

func (v *verifiableFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&v.on, "verifiable", false, "write the self-contained verifiable export (docs/AUDIT.md): every record in log order with its leaf hash and certificate, the checkpoints, the tree checkpoints and the bundle; through the server (auditor credential), or from the record store with --store and --bundle; needs --out")
	fl.StringVar(&v.dsn, "store", "", "--verifiable: read the record store DSN (postgres://... or sqlite:PATH) directly instead of the server")
	fl.StringArrayVar(&v.bundles, "bundle", nil, "--verifiable --store: trust bundle PEM file to embed (repeatable)")
	fl.StringVar(&v.out, "out", "", "--verifiable: the export file")
}

func (v *verifiableFlags) run(cmd *cobra.Command, g *globalFlags) error {
	if v.dsn == "" {
		return exportRemote(cmd, g, v.out) // auditlog_cmd.go
	}
	if v.out == "" || len(v.bundles) == 0 {
		return errors.New("--verifiable --store DSN needs --bundle FILE and --out FILE")
	}
	roots, err := auditcli.LoadBundles(v.bundles)
	if err != nil {
		return err
	}
	n, err := auditcli.WriteVerifiable(cmd.Context(), v.dsn, roots, v.out)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "exported %d records to %s (verify with: tier0 audit verify --export %s --bundle bundle.pem)\n", n, v.out, v.out)
	return nil
}
