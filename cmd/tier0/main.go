// Command tier0 runs a tier0 CA node (`tier0 server`) and holds the
// operator, agent-bootstrap and compliance commands.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tier0-ca/tier0/internal/version"
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

// defaultDataDir is TIER0_DATA_DIR, else the deprecated TIER0_DATA, else
// ./tier0-data, for every command (`tier0 server` also reads a config file:
// withConfigFile).
func defaultDataDir() string {
	for _, env := range []string{envPrefix + "DATA_DIR", envPrefix + "DATA"} {
		if v := os.Getenv(env); v != "" {
			return v
		}
	}
	return "./tier0-data"
}

// resolveDataDir makes the data dir absolute: paths derived from it (key
// URIs such as soft:DATA/ca/audit.key, DSNs) must not depend on the
// working directory.
func (g *globalFlags) resolveDataDir() error {
	abs, err := filepath.Abs(g.dataDir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	g.dataDir = abs
	return nil
}

// registerClientFlags adds the flags that say which server a CLI command
// talks to, and as whom.
func (g *globalFlags) registerClientFlags(pf *pflag.FlagSet) {
	pf.StringSliceVar(&g.servers, "server", nil, "server address(es) for CLI commands (default: from DATA/server.json)")
	pf.StringVar(&g.td, "trust-domain-of-server", "", "trust domain for CLI commands (default: from DATA/server.json)")
	pf.StringVar(&g.credDir, "credential", "", "directory with svid.pem and key.pem for CLI commands (default: DATA/admin, or DATA/auditor for audit)")
}

func run(ctx context.Context, args []string) error {
	root := newRootCmd(&globalFlags{})
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

func newRootCmd(g *globalFlags) *cobra.Command {
	root := &cobra.Command{
		Use:               "tier0",
		Short:             "tier0: a short-lived certificate authority for workload identity (SPIFFE)",
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: func(*cobra.Command, []string) error { return g.resolveDataDir() },
	}
	version.SetOn(root)
	pf := root.PersistentFlags()
	pf.StringVar(&g.dataDir, "data-dir", defaultDataDir(), "data directory (env TIER0_DATA_DIR; TIER0_DATA is deprecated)")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(newServerCmd(g), newHealthcheckCmd(g))
	// The CLI verbs talk to a server; the server has no use for these.
	verbs := []*cobra.Command{newTokenCmd(g), newEntryCmd(g), newAuditCmd(g), newStorageCmd(g), newCACmd(g), newSignerCmd(), newFederationCmd(g), newClusterCmd(g),
		newBackupCmd(g), newDeprecatedRestoreCmd(g), newDrillCmd(g), newAgentCmd(g), newBundleCmd(g), newLoginCmd(g), newWitnessCmd(g)}
	for _, c := range verbs {
		g.registerClientFlags(c.PersistentFlags())
		root.AddCommand(c)
	}
	return root
}

func (g *globalFlags) logger() *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(g.logLevel))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}
