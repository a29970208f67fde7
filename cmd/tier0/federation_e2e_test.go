package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/testenv"
)

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string { return testenv.FreeAddr(t) }

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

// TestFederation: two tier0 trust domains on loopback federate over their
// bundle endpoints (https_spiffe), each leader fetches the other's bundle,
// the agents hand it to their workloads, and a workload of each trust
// domain completes an mTLS handshake with the other.
func TestFederation(t *testing.T) {
	ctx := testCtx(t)
	epA, epB := freeAddr(t), freeAddr(t)
	a := startServer(t, t.TempDir(), "--trust-domain", "example.org", "--bundle-endpoint", epA)
	b := startServer(t, t.TempDir(), "--trust-domain", "other.org", "--bundle-endpoint", epB)
	federate := func(self, peer *proc, ep string) {
		must(self.cli("federation", "add", "--trust-domain", peer.td().Name(), "--endpoint", "https://"+ep,
			"--profile", "https_spiffe", "--endpoint-spiffe-id", "spiffe://"+peer.td().Name()+"/tier0/node/node1",
			"--bundle", filepath.Join(peer.dataDir, "bundle.pem")))
	}
	federate(a, b, epB)
	federate(b, a, epA)
	// The leader replaces the initial (PEM-only) trust with the fetched
	// bundle, which also carries the peer's JWT key.
	for _, p := range []*proc{a, b} {
		probe := agentClient(t, p, "probe")
		pollUntil(t, 30*time.Second, func() bool { return federatedJWTKeys(probe) > 0 })
	}

	uid := fmt.Sprint(os.Getuid())
	webA := spiffeid.RequireFromString("spiffe://example.org/web")
	apiB := spiffeid.RequireFromString("spiffe://other.org/api")
	localA := spiffeid.RequireFromString("spiffe://example.org/local")
	must(a.cli("entry", "create", "--agent", "host-a", "--spiffe-id", webA.String(), "--selector", "unix:uid:"+uid, "--federates-with", "other.org"))
	must(a.cli("entry", "create", "--agent", "host-a2", "--spiffe-id", localA.String(), "--selector", "unix:uid:"+uid))
	must(b.cli("entry", "create", "--agent", "host-b", "--spiffe-id", apiB.String(), "--selector", "unix:uid:"+uid, "--federates-with", "spiffe://example.org"))
	if out := must(a.cli("entry", "list", "--agent", "host-a", "-o", "json")); !strings.Contains(out, `"federates_with":["other.org"]`) {
		t.Fatalf("entry list lacks federates_with: %s", out)
	}
	agentA := startAgent(t, a, "host-a", "--sync-interval", "200ms", "--bundle-refresh", "200ms")
	agentA2 := startAgent(t, a, "host-a2", "--sync-interval", "200ms", "--bundle-refresh", "200ms")
	agentB := startAgent(t, b, "host-b", "--sync-interval", "200ms", "--bundle-refresh", "200ms")
	srcA := agentA.x509Source(ctx, webA)
	srcB := agentB.x509Source(ctx, apiB)
	pollUntil(t, 30*time.Second, func() bool {
		_, errA := srcA.GetX509BundleForTrustDomain(b.td())
		_, errB := srcB.GetX509BundleForTrustDomain(a.td())
		return errA == nil && errB == nil
	})
	mtlsSources(t, webA, srcA, apiB, srcB)

	// Federation is per entry: the workload of host-a2, whose entry names
	// no federated trust domain, gets only its own bundle, although its
	// agent holds other.org's (it fetched the bundle before serving).
	srcA2 := agentA2.x509Source(ctx, localA)
	if _, err := srcA2.GetX509BundleForTrustDomain(b.td()); err == nil {
		t.Fatal("a workload whose entry does not federate with other.org got its bundle")
	}
	jwtA2, err := workloadapi.FetchJWTBundles(ctx, agentA2.addr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwtA2.GetJWTBundleForTrustDomain(b.td()); err == nil || jwtA2.Len() != 1 {
		t.Fatalf("host-a2 workload got %d jwt bundles (other.org: %v), want only its own", jwtA2.Len(), err)
	}

	// A relationship with an unreachable endpoint keeps its initial bundle
	// and reports the error.
	must(a.cli("federation", "add", "--trust-domain", "gone.org", "--endpoint", "https://"+freeAddr(t),
		"--profile", "https_spiffe", "--endpoint-spiffe-id", "spiffe://gone.org/tier0/node/x",
		"--bundle", filepath.Join(b.dataDir, "bundle.pem")))
	pollUntil(t, 30*time.Second, func() bool {
		out, err := a.cli("federation", "list", "-o", "json")
		return err == nil && strings.Contains(out, `"trust_domain":"gone.org"`) && strings.Contains(out, "connection refused")
	})
	// Bad input is refused with a clear message.
	for _, args := range [][]string{
		{"--trust-domain", "example.org", "--endpoint", "https://x", "--profile", "https_web"},
		{"--trust-domain", "x.org", "--endpoint", "http://x", "--profile", "https_web"},
		{"--trust-domain", "x.org", "--endpoint", "https://x", "--profile", "ftp"},
		{"--trust-domain", "x.org", "--endpoint", "https://x", "--profile", "https_spiffe", "--endpoint-spiffe-id", "spiffe://x.org/e"},
	} {
		if _, err := a.cli(append([]string{"federation", "add"}, args...)...); err == nil || !strings.Contains(err.Error(), "InvalidArgument") {
			t.Errorf("federation add %v: %v, want InvalidArgument", args, err)
		}
	}
}

// federatedJWTKeys counts the JWT authorities of the federated bundles p
// serves to its agents.
func federatedJWTKeys(ag *client.Client) int {
	resp, err := ag.Agent().GetBundle(context.Background(), &tier0v1.GetBundleRequest{})
	if err != nil {
		return 0
	}
	n := 0
	for _, fb := range resp.GetFederated() {
		td := spiffeid.RequireTrustDomainFromString(fb.GetTrustDomain())
		if sb, err := spiffebundle.Parse(td, fb.GetSpiffeBundle()); err == nil {
			n += len(sb.JWTAuthorities())
		}
	}
	return n
}

// TestFederationHTTPSWeb: the https_web profile. The peer's bundle endpoint
// presents a Web PKI certificate (here from a test CA the fetching server
// is told to trust); the fetched bundle holds the peer's X.509 roots.
func TestFederationHTTPSWeb(t *testing.T) {
	dir := t.TempDir()
	caPEM, certPEM, keyPEM := webPKI(t)
	for name, b := range map[string][]byte{"ca.pem": caPEM, "cert.pem": certPEM, "key.pem": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ep := freeAddr(t)
	b := startServer(t, t.TempDir(), "--trust-domain", "other.org", "--bundle-endpoint", ep,
		"--bundle-endpoint-cert", filepath.Join(dir, "cert.pem"), "--bundle-endpoint-key", filepath.Join(dir, "key.pem"))
	a := startServer(t, t.TempDir(), "--federation-web-roots", filepath.Join(dir, "ca.pem"))
	must(a.cli("federation", "add", "--trust-domain", "other.org", "--endpoint", "https://"+ep, "--profile", "https_web"))
	probe := agentClient(t, a, "probe")
	pollUntil(t, 30*time.Second, func() bool {
		resp, err := probe.Agent().GetBundle(context.Background(), &tier0v1.GetBundleRequest{})
		if err != nil {
			return false
		}
		for _, fb := range resp.GetFederated() {
			sb, err := spiffebundle.Parse(b.td(), fb.GetSpiffeBundle())
			if err == nil && sb.X509Bundle().Equal(b.bundle()) {
				return true
			}
		}
		return false
	})
}

// webPKI makes a CA and a server certificate for 127.0.0.1, as PEM.
func webPKI(t *testing.T) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, leafKey := p256(t), p256(t)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test web ca"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, leafKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}
