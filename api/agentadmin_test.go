package api

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/roles"
)

// TestEntryTTLCeilingThroughAPI: an item asking for more than its entry's
// TTL (30m here) gets an SVID of the entry's TTL, not an error.
func TestEntryTTLCeilingThroughAPI(t *testing.T) {
	f := newFixture(t)
	f.grant(t, "a1", "spiffe://example.org/web")
	agentID, _ := roles.AgentID(testTD, "a1")
	c := f.clientAs(t, agentID)
	csr, _, _ := client.NewCSR(spiffeid.RequireFromString("spiffe://example.org/web"))
	resp, err := c.Agent().MintX509SVIDs(context.Background(), &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: csr, TtlSeconds: 3600}}})
	if err != nil || resp.GetResults()[0].GetError() != nil {
		t.Fatal(err, resp.GetResults()[0].GetError())
	}
	leaf, err := x509.ParseCertificate(resp.GetResults()[0].GetChain()[0])
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(leaf.NotAfter); left > 30*time.Minute+time.Second || left < 29*time.Minute {
		t.Fatalf("asked 60m of a 30m entry, got %s", left)
	}
}

// TestPreRegistryCredential: an agent SVID without an attestation
// generation (issued before the registry) works until its agent is
// evicted; the eviction is refused on the next call.
func TestPreRegistryCredential(t *testing.T) {
	f := newFixture(t)
	f.grant(t, "a1", "spiffe://example.org/web")
	agentID, _ := roles.AgentID(testTD, "a1")
	c := f.clientAs(t, agentID)
	ctx := context.Background()
	if _, err := c.Agent().ListAuthorizedEntries(ctx, &tier0v1.ListAuthorizedEntriesRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.node.SetAgentState(ctx, "a1", "evict", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Agent().ListAuthorizedEntries(ctx, &tier0v1.ListAuthorizedEntriesRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("after evict: %v", err)
	}
}
