package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/cliout"
	"github.com/tier0-ca/tier0/signer"
)

// `tier0 ca`: root key rotation by the operator.
func newCACmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "CA root keys: list, prepare a new root, activate it, taint a replaced one"}
	var output string
	list := &cobra.Command{
		Use:   "list [-o table|json]",
		Short: "List CA roots with their state in the cluster and on each node (prepared, active, activating, published-old, retired)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				resp, err := c.Admin().ListCARoots(cmd.Context(), &tier0v1.ListCARootsRequest{})
				if err != nil {
					return cliErr(err)
				}
				return cliout.CARoots(cmd.OutOrStdout(), cmd.ErrOrStderr(), output, resp)
			})
		},
	}
	outputFlag(list.Flags(), &output, "table or json", outTable, outJSON)

	var uri, changeOut string
	var ttl time.Duration
	prepare := &cobra.Command{
		Use:   "prepare [--signer URI] [--ttl 43800h] [-o text|json]",
		Short: "Make a root certificate for a new key and publish it in the bundle (it signs nothing until activated)",
		Long: `Prepare prints the new root's ID alone on stdout (ID=$(tier0 ca prepare ...)) and
what it did on stderr; with -o json the root as one object.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				resp, err := c.Admin().PrepareCARoot(cmd.Context(), &tier0v1.PrepareCARootRequest{SignerUri: uri, TtlSeconds: int64(ttl / time.Second)})
				if err != nil {
					return cliErr(err)
				}
				return cliout.CARootPrepared(cmd.OutOrStdout(), cmd.ErrOrStderr(), changeOut, resp.GetRoot())
			})
		},
	}
	prepare.Flags().StringVar(&uri, "signer", "", "the new root key URI (pkcs11:, awskms:, gcpkms:, soft:); empty: a DEV-ONLY soft key made on the server")
	prepare.Flags().DurationVar(&ttl, "ttl", 0, "root certificate lifetime (default: the server's --root-ttl)")

	var force bool
	activate := &cobra.Command{
		Use:   "activate ID [--force] [-o text|json]",
		Short: "Start issuing from a prepared root; the old root stays in the bundle until its SVIDs have expired",
		Long: `Start issuing from a prepared root. It is refused until every voter has
reported that it can sign with the root's key, and until the root has been
in the bundle for the server's --ca-publish-window (default 10m), so that
every agent has fetched it; --force skips the window (not the voters) and
prints a warning. The old root stays in the bundle (published-old) until
every SVID it signed has expired.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				resp, err := c.Admin().ActivateCARoot(cmd.Context(), &tier0v1.ActivateCARootRequest{Id: args[0], Force: force})
				if err != nil {
					return cliErr(err)
				}
				return cliout.CARootActivated(cmd.OutOrStdout(), cmd.ErrOrStderr(), changeOut, resp)
			})
		},
	}
	activate.Flags().BoolVar(&force, "force", false, "activate before the publish window has passed (agents that have not synced since the prepare may fail)")
	outputFlag(prepare.Flags(), &changeOut, "text (the root ID alone) or json", outText, outJSON)
	outputFlag(activate.Flags(), &changeOut, "text (one line) or json", outText, outJSON)
	cmd.AddCommand(list, prepare, activate, newCATaintCmd(g))
	return cmd
}

// `tier0 signer`: check a key URI without a server.
func newSignerCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "signer", Short: "Check a CA key URI: sign and verify, or benchmark"}
	var uri string
	var opts signer.Options
	var conc int
	var dur time.Duration
	var output string
	withSigner := func(cmd *cobra.Command, fn func(signer.Signer) error) error {
		s, err := signer.Open(cmd.Context(), uri, opts)
		if err != nil {
			return err
		}
		defer s.Close()
		return fn(s)
	}
	test := &cobra.Command{
		Use:   "test --uri URI [-o text|json]",
		Short: "Open the key, sign a random digest, verify it and print the latency",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withSigner(cmd, func(s signer.Signer) error {
				lat, err := signer.SelfTest(cmd.Context(), s)
				if err != nil {
					return err
				}
				return printJSONOr(cmd.OutOrStdout(), output, map[string]any{"ok": true, "key_id": s.KeyID(), "public_key": fmt.Sprintf("%T", s.Public()), "seconds": lat.Seconds()},
					func(w io.Writer) {
						fmt.Fprintf(w, "ok: %s signed and verified in %s (%T)\n", s.KeyID(), lat.Round(time.Microsecond), s.Public())
					})
			})
		},
	}
	bench := &cobra.Command{
		Use:   "bench --uri URI [--concurrency N --duration D] [-o text|json]",
		Short: "Sign from N goroutines for D and print signs/s and latency percentiles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withSigner(cmd, func(s signer.Signer) error {
				r, err := signer.Bench(cmd.Context(), s, conc, dur)
				if err != nil {
					return err
				}
				return printJSONOr(cmd.OutOrStdout(), output, map[string]any{"key_id": s.KeyID(), "signs": r.Signs, "seconds": dur.Seconds(), "concurrency": conc,
					"signs_per_second": r.PerSec, "p50_seconds": r.P50.Seconds(), "p99_seconds": r.P99.Seconds()}, func(w io.Writer) {
					fmt.Fprintf(w, "%s: %d signs in %s at concurrency %d: %.0f signs/s, p50 %s, p99 %s\n",
						s.KeyID(), r.Signs, dur, conc, r.PerSec, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond))
				})
			})
		},
	}
	for _, c := range []*cobra.Command{test, bench} {
		c.Flags().StringVar(&uri, "uri", "", "key URI (see `go doc github.com/tier0-ca/tier0/signer`)")
		c.Flags().DurationVar(&opts.Timeout, "timeout", 5*time.Second, "per-sign timeout")
		c.Flags().Float64Var(&opts.RateLimit, "rate-limit", 0, "KMS signs/s (default the provider default; negative: unlimited)")
		c.Flags().IntVar(&opts.Sessions, "sessions", 0, "PKCS#11 sessions (default 4)")
		outputFlag(c.Flags(), &output, "text or json", outText, outJSON)
		_ = c.MarkFlagRequired("uri")
	}
	bench.Flags().IntVar(&conc, "concurrency", 8, "concurrent signers")
	bench.Flags().DurationVar(&dur, "duration", 5*time.Second, "how long to sign")
	cmd.AddCommand(test, bench)
	return cmd
}
