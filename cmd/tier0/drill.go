package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/internal/drill"
	"github.com/tier0-ca/tier0/internal/flagconfig"
)

// `tier0 drill restore|failover` (internal/drill).

func newDrillCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "drill", Short: "Rehearse disaster recovery: restore and failover drills with measured RTO/RPO"}
	var jsonOut, keep bool
	var bin, output string
	restore := &cobra.Command{
		Use:   "restore [--keep] [-o text|json]",
		Short: "Back up the running CA, restore it into a scratch node on loopback, verify it and issue a probe SVID",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d := &drill.RestoreReport{}
			err := drill.Restore(cmd.Context(), drill.RestoreConfig{Source: g.operator(), Binary: bin, Keep: keep,
				Env: flagconfig.StripEnv(os.Environ(), envPrefix)}, d)
			if err != nil {
				d.Error = err.Error()
			}
			if perr := printJSONOr(cmd.OutOrStdout(), jsonOr(output, jsonOut), d, d.Print); perr != nil {
				return perr
			}
			if err != nil {
				return fmt.Errorf("drill restore: %w", err)
			}
			if !d.OK {
				return errors.New("drill restore: a check failed")
			}
			return nil
		},
	}
	outputFlag(restore.Flags(), &output, "text or json (the report)", outText, outJSON)
	deprecatedJSONFlag(restore, &jsonOut)
	restore.Flags().BoolVar(&keep, "keep", false, "keep the scratch data dir (and print where)")
	restore.Flags().StringVar(&bin, "tier0-binary", "", "tier0 binary for the scratch node (default: this executable)")
	cmd.AddCommand(restore, newFailoverDrillCmd(g))
	return cmd
}

type failoverFlags struct {
	cluster  []string
	killDirs []string
	kill     bool
	to       string
	after    time.Duration
	timeout  time.Duration
	jsonOut  bool
	output   string
}

func newFailoverDrillCmd(g *globalFlags) *cobra.Command {
	f := &failoverFlags{}
	cmd := &cobra.Command{
		Use:   "failover --cluster ADDRS [--kill-local --node-dirs DIRS] [-o text|json]",
		Short: "Issue probe SVIDs continuously while leadership moves (transfer, or SIGKILL of a local leader); report time to first good issuance and records lost",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(f.cluster) == 0 {
				return errors.New("--cluster: give the API addresses of the cluster's nodes")
			}
			if f.kill && len(f.killDirs) == 0 {
				return errors.New("--kill-local needs --node-dirs: the data dirs of the local nodes (their server.json names each PID)")
			}
			d := &drill.FailoverReport{}
			err := drill.Failover(cmd.Context(), drill.FailoverConfig{Source: g.operator(), Cluster: f.cluster, KillLocal: f.kill,
				NodeDirs: f.killDirs, To: f.to, After: f.after, Timeout: f.timeout}, d)
			if err != nil {
				d.Error = err.Error()
			}
			if perr := printJSONOr(cmd.OutOrStdout(), jsonOr(f.output, f.jsonOut), d, d.Print); perr != nil {
				return perr
			}
			if err != nil {
				return fmt.Errorf("drill failover: %w", err)
			}
			if !d.OK {
				return fmt.Errorf("drill failover: %d records lost", d.RecordsLost)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.cluster, "cluster", nil, "API addresses of the cluster nodes (host:port,...)")
	fl.BoolVar(&f.kill, "kill-local", false, "SIGKILL the leader's process (local clusters only; PIDs from DATA/server.json) instead of transferring leadership")
	fl.StringSliceVar(&f.killDirs, "node-dirs", nil, "with --kill-local: data dirs of the local nodes")
	fl.StringVar(&f.to, "to", "", "transfer leadership to this node ID (default: the most up-to-date follower)")
	fl.DurationVar(&f.after, "after", 3*time.Second, "keep probing this long after the first good issuance following the disruption")
	fl.DurationVar(&f.timeout, "timeout", 2*time.Minute, "give up on a new leader / good issuance / export after this long")
	outputFlag(fl, &f.output, "text or json (the report)", outText, outJSON)
	deprecatedJSONFlag(cmd, &f.jsonOut)
	return cmd
}

// deprecatedJSONFlag keeps the drills' old --json (hidden): -o json.
func deprecatedJSONFlag(cmd *cobra.Command, p *bool) {
	cmd.Flags().BoolVar(p, "json", false, "print the report as JSON")
	_ = cmd.Flags().MarkDeprecated("json", "use -o json")
}

// jsonOr is -o, or json when the deprecated --json was given.
func jsonOr(output string, jsonFlag bool) string {
	if jsonFlag {
		return outJSON
	}
	return output
}
