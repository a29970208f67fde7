package client

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client/clienttest"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

func TestAuthorizeNode(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	authz := AuthorizeNode(td)
	tests := []struct {
		id      string
		wantErr string
	}{
		{id: "spiffe://example.org/tier0/node/n1"},
		{id: "spiffe://example.org/tier0/node/a.b-c_d"},
		{id: "spiffe://example.org/tier0/nodes/x", wantErr: `client: "spiffe://example.org/tier0/nodes/x": server is not a tier0 node of "example.org"`},
		{id: "spiffe://example.org/tier0/node", wantErr: `client: "spiffe://example.org/tier0/node": server is not a tier0 node of "example.org"`},
		{id: "spiffe://example.org/tier0/node/a/b", wantErr: `client: "spiffe://example.org/tier0/node/a/b": server is not a tier0 node of "example.org"`},
		{id: "spiffe://example.org/x/tier0/node/a", wantErr: `client: "spiffe://example.org/x/tier0/node/a": server is not a tier0 node of "example.org"`},
		{id: "spiffe://example.org/TIER0/node/a", wantErr: `client: "spiffe://example.org/TIER0/node/a": server is not a tier0 node of "example.org"`},
		{id: "spiffe://example.org/tier0/agent/a", wantErr: `client: "spiffe://example.org/tier0/agent/a": server is not a tier0 node of "example.org"`},
		{id: "spiffe://example.org/tier0/admin", wantErr: `client: "spiffe://example.org/tier0/admin": server is not a tier0 node of "example.org"`},
		{id: "spiffe://evil.org/tier0/node/n1", wantErr: `client: "spiffe://evil.org/tier0/node/n1": server is not a tier0 node of "example.org"`},
		{id: "spiffe://example.org.evil.org/tier0/node/n1", wantErr: `client: "spiffe://example.org.evil.org/tier0/node/n1": server is not a tier0 node of "example.org"`},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			err := authz(spiffeid.RequireFromString(tt.id), nil)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("got %v, want %q", err, tt.wantErr)
			}
		})
	}
	if err := AuthorizeNode(spiffeid.TrustDomain{})(spiffeid.RequireFromString("spiffe://example.org/tier0/node/n1"), nil); err == nil {
		t.Fatal("zero trust domain authorized a node")
	}
}

// TestServerAuthorization runs real TLS handshakes against servers that
// present various SVIDs issued by the trusted CA.
func TestServerAuthorization(t *testing.T) {
	ca := clienttest.NewCA(t, "example.org")
	other := clienttest.NewCA(t, "evil.org")
	fake := clienttest.NewServer(ca)
	agent := NewRotatingSVID(ca.Issue(t, spiffeid.RequireFromString("spiffe://example.org/tier0/agent/a1"), time.Hour))
	tests := []struct {
		name    string
		serve   *clienttest.CA
		id      string
		wantErr string // substring of the handshake error; "" = success
	}{
		{name: "node", serve: ca, id: "spiffe://example.org/tier0/node/n1"},
		{name: "nodes", serve: ca, id: "spiffe://example.org/tier0/nodes/x", wantErr: `server is not a tier0 node`},
		{name: "no node name", serve: ca, id: "spiffe://example.org/tier0/node", wantErr: `server is not a tier0 node`},
		{name: "two segments", serve: ca, id: "spiffe://example.org/tier0/node/a/b", wantErr: `server is not a tier0 node`},
		{name: "agent svid", serve: ca, id: "spiffe://example.org/tier0/agent/a2", wantErr: `server is not a tier0 node`},
		{name: "other trust domain signed by our CA", serve: ca, id: "spiffe://evil.org/tier0/node/n1", wantErr: `no X.509 bundle found for trust domain: \"evil.org\"`},
		{name: "other CA", serve: other, id: "spiffe://evil.org/tier0/node/n1", wantErr: `no X.509 bundle found for trust domain: \"evil.org\"`},
		{name: "other CA same trust domain", serve: clienttest.NewCA(t, "example.org"), id: "spiffe://example.org/tier0/node/n1", wantErr: `x509svid: could not verify leaf certificate`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svid := tt.serve.Issue(t, spiffeid.RequireFromString(tt.id), time.Hour)
			addr := clienttest.Serve(t, svid, func(g *grpc.Server) { tier0v1.RegisterAgentServer(g, fake) })
			c, err := New(context.Background(), Config{Addrs: []string{addr}, TrustDomain: ca.TD, Bundle: ca.Bundle, SVID: agent, MaxAttempts: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err = c.Agent().GetBundle(ctx, &tier0v1.GetBundleRequest{})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("GetBundle: %v", err)
				}
				return
			}
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want Unavailable containing %q", err, tt.wantErr)
			}
		})
	}
}
