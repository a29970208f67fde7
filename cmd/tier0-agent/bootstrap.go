package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/api/client"
)

func newBootstrapCmd(e *env) *cobra.Command {
	var bundlePath, token, tdName string
	var att attestFlags
	cmd := &cobra.Command{
		Use:   "bootstrap --server ADDR[,ADDR...] --bundle FILE (--token TOKEN | --attestor NAME ...)",
		Short: "obtain the agent SVID with a one-time join token or by node attestation",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if att.attestor != "" {
				if token != "" {
					return errors.New("--token and --attestor exclude each other")
				}
				return e.attestBootstrap(cmd.Context(), &att, bundlePath, tdName)
			}
			return e.bootstrap(cmd.Context(), token, bundlePath, tdName)
		},
	}
	f := cmd.Flags()
	f.StringVar(&bundlePath, "bundle", "", "PEM file with the tier0 root certificates")
	f.StringVar(&token, "token", "", "one-time join token (or env "+tokenEnv+")")
	f.StringVar(&tdName, "trust-domain", "", "trust domain (default: the SPIFFE ID of the bundle's root)")
	att.register(f)
	return cmd
}

// bootstrap exchanges a join token for the agent SVID and writes the
// agent's identity into its data dir.
func (e *env) bootstrap(ctx context.Context, token, bundlePath, tdName string) error {
	if token == "" {
		token = e.getenv(tokenEnv)
	}
	if token == "" {
		return errors.New("--token is required (or set " + tokenEnv + ")")
	}
	if bundlePath == "" {
		return errors.New("--bundle is required: the PEM root certificates of the tier0 CA")
	}
	td, err := trustDomain(tdName, bundlePath)
	if err != nil {
		return err
	}
	bundle, err := client.LoadBundleFile(bundlePath, td)
	if err != nil {
		return err
	}
	servers := e.servers
	if len(servers) == 0 {
		servers = []string{client.DefaultAddr}
	}
	svid, err := client.Bootstrap(ctx, servers, td, bundle, token)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	dir := agentDir(e.dataDir)
	if err := client.WriteSVIDFiles(dir, svid, bundle); err != nil {
		return err
	}
	if err := writeConfig(dir, agentConfig{Servers: servers, TrustDomain: td.Name()}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s\texpires %s\t%s\n", svid.ID, svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339), dir)
	return nil
}

// trustDomain is name, or else the trust domain named by the URI SAN of the
// roots in bundlePath.
func trustDomain(name, bundlePath string) (spiffeid.TrustDomain, error) {
	if name != "" {
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			return td, fmt.Errorf("--trust-domain: %w", err)
		}
		return td, nil
	}
	if _, err := os.Stat(bundlePath); err != nil {
		return spiffeid.TrustDomain{}, fmt.Errorf("--bundle: %w", err)
	}
	// Any trust domain will do to parse the PEM.
	b, err := client.LoadBundleFile(bundlePath, spiffeid.RequireTrustDomainFromString("parse.invalid"))
	if err != nil {
		return spiffeid.TrustDomain{}, err
	}
	var found spiffeid.TrustDomain
	for _, c := range b.X509Authorities() {
		for _, u := range c.URIs {
			id, err := spiffeid.FromURI(u)
			if err != nil {
				continue
			}
			if !found.IsZero() && found != id.TrustDomain() {
				return found, fmt.Errorf("--bundle roots name trust domains %q and %q: pass --trust-domain", found, id.TrustDomain())
			}
			found = id.TrustDomain()
		}
	}
	if found.IsZero() {
		return found, errors.New("--trust-domain is required: the bundle's roots carry no SPIFFE ID")
	}
	return found, nil
}

func newRenewCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "renew",
		Short: "renew the agent SVID once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := e.loadAgent()
			if err != nil {
				return err
			}
			svid, err := e.renew(cmd.Context(), a)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s\texpires %s\t%s\n", svid.ID, svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339), a.dir)
			return nil
		},
	}
}
