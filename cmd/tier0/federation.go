package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tier0-ca/tier0/api"
	"github.com/tier0-ca/tier0/ha"
)

// serveBundleEndpoint serves the SPIFFE bundle endpoint on f.bundleAddr
// until ctx ends: https_spiffe (the node presents its SVID), or https_web
// when a Web PKI certificate is configured.
func serveBundleEndpoint(ctx context.Context, f *serverFlags, td spiffeid.TrustDomain, node *ha.Node, svid x509svid.Source, log *slog.Logger) error {
	tlsCfg, profile := api.BundleEndpointTLS(svid), api.ProfileSPIFFE
	if f.bundleCert != "" || f.bundleKey != "" {
		cert, err := tls.LoadX509KeyPair(f.bundleCert, f.bundleKey)
		if err != nil {
			return fmt.Errorf("--bundle-endpoint-cert/--bundle-endpoint-key: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		profile = api.ProfileWeb
	}
	lis, err := net.Listen("tcp", f.bundleAddr)
	if err != nil {
		return fmt.Errorf("listen bundle endpoint: %w", err)
	}
	hs := api.HTTPServer(api.BundleEndpoint(td, node, node, log))
	go func() { //nolint:gosec // G118: shutdown needs a fresh context once ctx is done
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	go func() {
		err := hs.Serve(tls.NewListener(lis, tlsCfg))
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("bundle endpoint", "err", err)
		}
	}()
	log.Info("bundle endpoint listening", "addr", lis.Addr().String(), "profile", profile)
	return nil
}

// startFederator keeps federated bundles fresh (leader only).
func startFederator(ctx context.Context, node *ha.Node, webRoots string, log *slog.Logger) (*api.Federator, error) {
	var roots *x509.CertPool // nil: the system roots
	if webRoots != "" {
		pem, err := os.ReadFile(webRoots)
		if err != nil {
			return nil, fmt.Errorf("--federation-web-roots: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--federation-web-roots %s: no PEM certificates", webRoots)
		}
	}
	fed, err := api.NewFederator(api.FederatorConfig{
		Store:    node,
		Roots:    roots,
		IsLeader: func() bool { return node.Status().State == "Leader" },
		Logger:   log,
	})
	if err != nil {
		return nil, err
	}
	go fed.Run(ctx)
	return fed, nil
}
