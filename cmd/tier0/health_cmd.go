package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/cliout"
	"github.com/tier0-ca/tier0/internal/operator"
)

// newHealthcheckCmd: `tier0 healthcheck` asks a node's /readyz (or, with
// --verbose, /healthz?verbose) and exits 0 only when it can issue: for
// scripts, systemd and exec probes (after spire-server healthcheck).
func newHealthcheckCmd(g *globalFlags) *cobra.Command {
	var addr, output string
	var verbose bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "healthcheck [--http HOST:PORT] [-o text|json]",
		Short: "Exit 0 when the node can issue now (its /readyz), else 1 with the reason",
		Long: "Asks the node's health endpoint (--http, default: the address in DATA/server.json) over plain HTTP.\n" +
			"Exit 0: ready (leader, or follower with a leader, healthy signer and journal). Exit 1: not ready or not answering.\n" +
			"-o json (or --verbose) prints the node's status as JSON (/healthz?verbose: role, leader, last contact, indexes, signer, export lag, disk).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			verbose := verbose || output == outJSON
			a, err := operator.Health(cmd.Context(), operator.HealthOptions{Addr: addr, DataDir: g.dataDir, Verbose: verbose, Timeout: timeout})
			if err == nil || verbose && a.Code != 0 {
				if _, perr := fmt.Fprintln(cmd.OutOrStdout(), a.Text); perr != nil && err == nil {
					return perr
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&addr, "http", "", "the node's health address (default: DATA/server.json's)")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print the node's status as JSON (-o json)")
	outputFlag(cmd.Flags(), &output, "text (the /readyz answer) or json (the node's status)", outText, outJSON)
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for the answer")
	return cmd
}

// newBundleCmd: `tier0 bundle show` prints the trust bundle the cluster
// serves now (admin or auditor credential).
func newBundleCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "bundle", Short: "The trust domain's current trust bundle"}
	var format, role string
	show := &cobra.Command{
		Use:   "show [-o pem|json]",
		Short: "Print the X.509 roots (PEM) or the SPIFFE bundle (JSON, with the JWT keys) the cluster serves now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withOperator(cmd, g, role, func(c *client.Client) error {
				b, err := c.Agent().GetBundle(cmd.Context(), &tier0v1.GetBundleRequest{})
				if err != nil {
					return cliErr(err)
				}
				return cliout.Bundle(cmd.OutOrStdout(), b, format)
			})
		},
	}
	outputFlag(show.Flags(), &format, "pem or json (SPIFFE bundle format)", "pem", outJSON)
	show.Flags().StringVar(&role, "as", "admin", "credential to use: admin or auditor")
	cmd.AddCommand(show)
	return cmd
}
