package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tier0-ca/tier0/api"
	"github.com/tier0-ca/tier0/ha"
)

// serveBundleEndpoint serves the SPIFFE bundle endpoint (https_spiffe: the
// node presents its SVID) on addr until ctx ends.
func serveBundleEndpoint(ctx context.Context, addr string, td spiffeid.TrustDomain, node *ha.Node, svid x509svid.Source, log *slog.Logger) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen bundle endpoint: %w", err)
	}
	hs := &http.Server{Handler: api.BundleEndpoint(td, node, node, log), ReadHeaderTimeout: 5 * time.Second}
	go func() { //nolint:gosec // G118: shutdown needs a fresh context once ctx is done
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	go func() {
		err := hs.Serve(tls.NewListener(lis, api.BundleEndpointTLS(svid)))
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("bundle endpoint", "err", err)
		}
	}()
	log.Info("bundle endpoint listening", "addr", lis.Addr().String(), "profile", "https_spiffe")
	return nil
}

// startFederator keeps federated bundles fresh (leader only).
func startFederator(ctx context.Context, node *ha.Node, log *slog.Logger) (*api.Federator, error) {
	fed, err := api.NewFederator(api.FederatorConfig{
		Store:    node,
		IsLeader: func() bool { return node.Status().State == "Leader" },
		Logger:   log,
	})
	if err != nil {
		return nil, err
	}
	go fed.Run(ctx)
	return fed, nil
}
