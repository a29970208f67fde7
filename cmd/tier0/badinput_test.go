package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// agentClient bootstraps agent NAME on srv and returns a client with its
// SVID (helpers in backup_e2e_test.go).
func agentClient(t *testing.T, srv *proc, name string, grants ...string) *client.Client {
	t.Helper()
	return clientAs(t, srv, agentSVID(t, srv, name, grants...))
}

func csrFor(t *testing.T, key crypto.Signer, uris []string, dns []string, ips []net.IP) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{DNSNames: dns, IPAddresses: ips}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func p256(t *testing.T) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestBadInputThroughAPI sends each kind of bad request through the real
// server and checks the per-item or per-call status, and that none of them
// left a record.
func TestBadInputThroughAPI(t *testing.T) {
	srv := startServer(t, t.TempDir())
	ag := agentClient(t, srv, "bad-1", "spiffe://example.org/ok")
	ctx := context.Background()

	good := csrFor(t, p256(t), []string{"spiffe://example.org/ok"}, nil, nil)
	badSig := append([]byte(nil), good...)
	badSig[len(badSig)-5] ^= 0xff
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)

	cases := []struct {
		name string
		item *tier0v1.MintItem
		code codes.Code
		msg  string
	}{
		{"malformed", &tier0v1.MintItem{Csr: []byte("not a csr")}, codes.InvalidArgument, "invalid csr"},
		{"oversized", &tier0v1.MintItem{Csr: make([]byte, 1<<20)}, codes.InvalidArgument, "invalid csr"},
		{"bad signature", &tier0v1.MintItem{Csr: badSig}, codes.InvalidArgument, "invalid csr"},
		{"zero uri sans", &tier0v1.MintItem{Csr: csrFor(t, p256(t), nil, nil, nil)}, codes.InvalidArgument, "invalid csr"},
		{"two uri sans", &tier0v1.MintItem{Csr: csrFor(t, p256(t), []string{"spiffe://example.org/ok", "spiffe://example.org/b"}, nil, nil)}, codes.InvalidArgument, "invalid csr"},
		{"dns san", &tier0v1.MintItem{Csr: csrFor(t, p256(t), []string{"spiffe://example.org/ok"}, []string{"x.example.org"}, nil)}, codes.InvalidArgument, "invalid csr"},
		{"ip san", &tier0v1.MintItem{Csr: csrFor(t, p256(t), []string{"spiffe://example.org/ok"}, nil, []net.IP{net.IPv4(127, 0, 0, 1)})}, codes.InvalidArgument, "invalid csr"},
		{"not spiffe", &tier0v1.MintItem{Csr: csrFor(t, p256(t), []string{"https://example.org/ok"}, nil, nil)}, codes.InvalidArgument, ""},
		{"foreign trust domain", &tier0v1.MintItem{Csr: csrFor(t, p256(t), []string{"spiffe://evil.org/ok"}, nil, nil)}, codes.InvalidArgument, "trust domain"},
		{"reserved path", &tier0v1.MintItem{Csr: csrFor(t, p256(t), []string{"spiffe://example.org/tier0/admin"}, nil, nil)}, codes.InvalidArgument, "reserved"},
		{"not granted", &tier0v1.MintItem{Csr: csrFor(t, p256(t), []string{"spiffe://example.org/other"}, nil, nil)}, codes.PermissionDenied, "permission denied"},
		{"ttl too short", &tier0v1.MintItem{Csr: good, TtlSeconds: 600}, codes.InvalidArgument, "[15m0s, 1h0m0s]"},
		{"ttl too long", &tier0v1.MintItem{Csr: good, TtlSeconds: 3660}, codes.InvalidArgument, "[15m0s, 1h0m0s]"},
		{"p224", &tier0v1.MintItem{Csr: csrFor(t, p224, []string{"spiffe://example.org/ok"}, nil, nil)}, codes.InvalidArgument, ""},
		{"rsa1024", &tier0v1.MintItem{Csr: csrFor(t, rsa1024, []string{"spiffe://example.org/ok"}, nil, nil)}, codes.InvalidArgument, ""},
	}
	items := []*tier0v1.MintItem{{Csr: good}}
	for _, c := range cases {
		items = append(items, c.item)
	}
	resp, err := ag.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: items})
	if err != nil {
		t.Fatalf("batch call: %v", err)
	}
	if got := len(resp.GetResults()); got != len(items) {
		t.Fatalf("%d results for %d items", got, len(items))
	}
	if r := resp.GetResults()[0]; r.GetError() != nil || len(r.GetChain()) == 0 {
		t.Fatalf("good item failed: %v", r.GetError())
	}
	for i, c := range cases {
		r := resp.GetResults()[i+1]
		if r.GetError() == nil {
			t.Errorf("%s: issued, want %v", c.name, c.code)
			continue
		}
		if codes.Code(r.GetError().GetCode()) != c.code || !strings.Contains(r.GetError().GetMessage(), c.msg) {
			t.Errorf("%s: got %v %q, want %v containing %q", c.name, codes.Code(r.GetError().GetCode()), r.GetError().GetMessage(), c.code, c.msg)
		}
		if len(r.GetChain()) != 0 {
			t.Errorf("%s: chain returned with an error", c.name)
		}
	}

	// Oversized batch: refused as a whole.
	big := make([]*tier0v1.MintItem, 257)
	for i := range big {
		big[i] = &tier0v1.MintItem{Csr: good}
	}
	_, err = ag.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: big})
	wantCode(t, "oversized batch", err, codes.InvalidArgument)

	// No client certificate, and a certificate from another CA: Unauthenticated.
	anon, err := client.New(ctx, client.Config{Addrs: []string{srv.addr()}, TrustDomain: srv.td(), Bundle: srv.bundle(), MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	_, err = anon.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: good}}})
	wantCode(t, "no client cert", err, codes.Unauthenticated)
	foreign, err := client.New(ctx, client.Config{Addrs: []string{srv.addr()}, TrustDomain: srv.td(), Bundle: srv.bundle(), SVID: client.NewRotatingSVID(foreignSVID(t, "spiffe://example.org/tier0/agent/bad-1")), MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Close()
	_, err = foreign.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: good}}})
	wantCode(t, "cert from another CA", err, codes.Unauthenticated)
	// An agent may not use the admin API.
	_, err = ag.Admin().ListEntries(ctx, &tier0v1.ListEntriesRequest{})
	wantCode(t, "agent calling admin", err, codes.PermissionDenied)

	// Exactly one workload record (the good item) for this agent.
	pollUntil(t, 20*time.Second, func() bool {
		out, err := srv.cli("audit", "list", "--agent", "spiffe://example.org/tier0/agent/bad-1", "-o", "json")
		return err == nil && strings.Count(out, "\"seq\"") == 1 // the agent SVID itself has no requesting agent
	})
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if status.Code(err) != want {
		t.Errorf("%s: got %v, want %v", what, err, want)
	}
}

// foreignSVID is an SVID for id from a CA the server has never seen.
func foreignSVID(t *testing.T, id string) *x509svid.SVID {
	t.Helper()
	caKey := p256(t)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "foreign"}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	key := p256(t)
	u, _ := url.Parse(id)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), URIs: []*url.URL{u}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(30 * time.Minute), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	leafDER, _ := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, key.Public(), caKey)
	leaf, _ := x509.ParseCertificate(leafDER)
	return &x509svid.SVID{ID: spiffeid.RequireFromString(id), Certificates: []*x509.Certificate{leaf}, PrivateKey: key}
}
