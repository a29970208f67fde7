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
		{name: "nodes", serve: ca, id: "spiffe://example.org/tier0/nodes/x", wantErr: `roles: \"spiffe://example.org/tier0/nodes/x\" is not a tier0 node of \"example.org\"`},
		{name: "no node name", serve: ca, id: "spiffe://example.org/tier0/node", wantErr: `roles: \"spiffe://example.org/tier0/node\" is not a tier0 node of \"example.org\"`},
		{name: "two segments", serve: ca, id: "spiffe://example.org/tier0/node/a/b", wantErr: `roles: \"spiffe://example.org/tier0/node/a/b\" is not a tier0 node of \"example.org\"`},
		{name: "agent svid", serve: ca, id: "spiffe://example.org/tier0/agent/a2", wantErr: `roles: \"spiffe://example.org/tier0/agent/a2\" is not a tier0 node of \"example.org\"`},
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
