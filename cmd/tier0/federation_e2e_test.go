package main

import (
	"net"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestBundleEndpoint fetches the bundle with go-spiffe's federation client
// (https_spiffe profile, authenticating the node SVID): it holds the X.509
// roots, the JWT key, a refresh hint and a sequence number.
func TestBundleEndpoint(t *testing.T) {
	ctx := testCtx(t)
	addr := freeAddr(t)
	srv := startServer(t, t.TempDir(), "--bundle-endpoint", addr)
	nodeID := spiffeid.RequireFromString("spiffe://example.org/tier0/node/node1")
	b, err := federation.FetchBundle(ctx, srv.td(), "https://"+addr, federation.WithSPIFFEAuth(srv.bundle(), nodeID))
	if err != nil {
		t.Fatal(err)
	}
	if !b.X509Bundle().Equal(srv.bundle()) {
		t.Fatal("x509 authorities differ from bundle.pem")
	}
	if n := len(b.JWTAuthorities()); n != 1 {
		t.Fatalf("%d jwt authorities, want 1", n)
	}
	if hint, ok := b.RefreshHint(); !ok || hint != 5*time.Minute {
		t.Fatalf("refresh hint %v %v", hint, ok)
	}
	if seq, ok := b.SequenceNumber(); !ok || seq == 0 {
		t.Fatalf("sequence %d %v", seq, ok)
	}
	// The wrong endpoint ID is refused.
	wrong := spiffeid.RequireFromString("spiffe://example.org/tier0/node/other")
	if _, err := federation.FetchBundle(ctx, srv.td(), "https://"+addr, federation.WithSPIFFEAuth(srv.bundle(), wrong)); err == nil {
		t.Fatal("fetched from an endpoint with the wrong SPIFFE ID")
	}
}
