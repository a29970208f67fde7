// Command tier0-dev serves local wire-compatible KMS endpoints (not KMSes:
// in-memory keys, no auth) for development, demos and trying tier0's KMS
// backends:
//
//	tier0-dev kms-aws --listen 127.0.0.1:4599 --create-key ECC_NIST_P256
//	tier0-dev kms-gcp --listen 127.0.0.1:4600 --create-key EC_SIGN_P256_SHA256
//
// It is a separate command so that the production binary, tier0, links no
// fake: `go list -deps ./cmd/tier0` names no kmsfake package
// (cmd/tier0/deps_test.go checks it).
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	kmspb "cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/signer/kmsfake/awsfake"
	"github.com/tier0-ca/tier0/signer/kmsfake/gcpfake"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cmd := newRootCmd()
	err := cmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tier0-dev:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:           "tier0-dev",
		Short:         "Development helpers for tier0: local wire-compatible AWS and GCP KMS endpoints",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var listen string
	var specs []string
	aws := &cobra.Command{
		Use:   "kms-aws --listen 127.0.0.1:4599 [--create-key ECC_NIST_P256 ...]",
		Short: "Serve a local AWS KMS endpoint (JSON 1.1 over HTTP) and print the created keys' URIs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lis, err := listenLoopback(listen)
			if err != nil {
				return err
			}
			fake := awsfake.New()
			for _, spec := range specs {
				arn, err := fake.CreateKey(spec)
				if err != nil {
					lis.Close()
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "awskms:///%s?region=%s&endpoint=http://%s\n", arn, fake.Region, lis.Addr())
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "fake AWS KMS on http://"+lis.Addr().String()+"; clients need any AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY set (not checked)")
			go func() { <-cmd.Context().Done(); lis.Close() }()
			if err := fake.Serve(lis); err != nil && cmd.Context().Err() == nil {
				return fmt.Errorf("kms-aws: %w", err)
			}
			return nil
		},
	}
	gcp := &cobra.Command{
		Use:   "kms-gcp --listen 127.0.0.1:4600 [--create-key EC_SIGN_P256_SHA256 ...]",
		Short: "Serve a local Cloud KMS endpoint (gRPC) and print the created key versions' URIs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lis, err := listenLoopback(listen)
			if err != nil {
				return err
			}
			fake := gcpfake.New()
			for i, spec := range specs {
				alg, ok := kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm_value[strings.ToUpper(spec)]
				if !ok {
					lis.Close()
					return fmt.Errorf("kms-gcp: unknown algorithm %q (e.g. EC_SIGN_P256_SHA256)", spec)
				}
				name, err := fake.CreateKey(fmt.Sprintf("projects/dev/locations/global/keyRings/tier0/cryptoKeys/key-%d", i+1), kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm(alg))
				if err != nil {
					lis.Close()
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "gcpkms:%s?endpoint=%s&insecure=1\n", name, lis.Addr())
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "fake Cloud KMS on "+lis.Addr().String())
			go func() { <-cmd.Context().Done(); fake.Stop() }()
			if err := fake.Serve(lis); err != nil && cmd.Context().Err() == nil {
				return fmt.Errorf("kms-gcp: %w", err)
			}
			return nil
		},
	}
	for _, c := range []*cobra.Command{aws, gcp} {
		c.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "loopback address to serve on")
		c.Flags().StringSliceVar(&specs, "create-key", nil, "create a key of this spec at start (repeatable)")
	}
	cmd.AddCommand(aws, gcp)
	return cmd
}

func listenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("tier0-dev: --listen %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("tier0-dev: --listen %q: the fakes have no auth; serve them on loopback only", addr)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tier0-dev: %w", err)
	}
	return lis, nil
}
