package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/serverinfo"
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
			if addr == "" {
				info, err := serverinfo.Read(g.dataDir)
				if err != nil || info.HTTP == "" {
					return fmt.Errorf("healthcheck: no --http and no running server in %s (server.json: %v)", g.dataDir, err)
				}
				addr = info.HTTP
			}
			verbose := verbose || output == outJSON
			path := "/readyz"
			if verbose {
				path = "/healthz?verbose&standbyok"
			}
			hc := http.Client{Timeout: timeout}
			resp, err := hc.Get("http://" + addr + path)
			if err != nil {
				return fmt.Errorf("healthcheck: %s not answering: %w", addr, err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			text := strings.TrimSpace(string(body))
			if resp.StatusCode != http.StatusOK {
				if verbose {
					fmt.Fprintln(cmd.OutOrStdout(), text)
				}
				return fmt.Errorf("healthcheck: %s: %d %s", addr, resp.StatusCode, firstLine(text))
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), text)
			return err
		},
	}
	cmd.Flags().StringVar(&addr, "http", "", "the node's health address (default: DATA/server.json's)")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print the node's status as JSON (-o json)")
	outputFlag(cmd.Flags(), &output, "text (the /readyz answer) or json (the node's status)", outText, outJSON)
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for the answer")
	return cmd
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
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
				return printBundle(cmd.OutOrStdout(), b, format)
			})
		},
	}
	outputFlag(show.Flags(), &format, "pem or json (SPIFFE bundle format)", "pem", outJSON)
	show.Flags().StringVar(&role, "as", "admin", "credential to use: admin or auditor")
	cmd.AddCommand(show)
	return cmd
}

func printBundle(w io.Writer, b *tier0v1.GetBundleResponse, format string) error {
	if format != outJSON {
		for _, der := range b.GetX509Authorities() {
			if err := pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: der}); err != nil {
				return err
			}
		}
		return nil
	}
	td, err := spiffeid.TrustDomainFromString(b.GetTrustDomain())
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	sb := spiffebundle.New(td)
	sb.SetSequenceNumber(b.GetSequence())
	for _, der := range b.GetX509Authorities() {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("bundle: root: %w", err)
		}
		sb.AddX509Authority(cert)
	}
	for _, j := range b.GetJwtAuthorities() {
		pub, err := x509.ParsePKIXPublicKey(j.GetPublicKey())
		if err != nil {
			return fmt.Errorf("bundle: JWT key %s: %w", j.GetKeyId(), err)
		}
		if err := sb.AddJWTAuthority(j.GetKeyId(), pub); err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
	}
	raw, err := sb.Marshal()
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	_, err = fmt.Fprintln(w, string(raw))
	return err
}
