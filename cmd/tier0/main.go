// Command tier0 runs a tier0 CA node (`tier0 server`) and holds the
// operator, agent-bootstrap and compliance commands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tier0:", err)
		os.Exit(1)
	}
}

type globalFlags struct {
	dataDir  string
	logLevel string
	servers  []string
	td       string
	credDir  string
}

func run(ctx context.Context, args []string) error {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "tier0",
		Short:         "tier0: a short-lived certificate authority for workload identity (SPIFFE)",
		SilenceUsage:  true,
		SilenceErrors: true,
		// One absolute data dir for everything below it: paths derived from
		// it (key URIs such as soft:DATA/ca/audit.key, DSNs) must not depend
		// on the working directory.
		PersistentPreRunE: func(*cobra.Command, []string) error {
			abs, err := filepath.Abs(g.dataDir)
			if err != nil {
				return fmt.Errorf("--data-dir: %w", err)
			}
			g.dataDir = abs
			return nil
		},
	}
	def := os.Getenv("TIER0_DATA")
	if def == "" {
		def = "./tier0-data"
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.dataDir, "data-dir", def, "data directory (env TIER0_DATA)")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	pf.StringSliceVar(&g.servers, "server", nil, "server address(es) for CLI commands (default: from DATA/server.json)")
	pf.StringVar(&g.td, "trust-domain-of-server", "", "trust domain for CLI commands (default: from DATA/server.json)")
	pf.StringVar(&g.credDir, "credential", "", "directory with svid.pem and key.pem for CLI commands (default: DATA/admin, or DATA/auditor for audit)")
	root.AddCommand(newServerCmd(g), newTokenCmd(g), newEntryCmd(g), newAuditCmd(g), newStorageCmd(g), newCACmd(g), newSignerCmd(), newDevCmd(), newFederationCmd(g), newClusterCmd(g),
		newBackupCmd(g), newRestoreCmd(g), newDrillCmd(g))
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}
