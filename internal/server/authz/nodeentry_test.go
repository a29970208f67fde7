package authz

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/hatest"
)

// TestAuthorizeNodeEntry: a node-selector entry grants its ID to every
// agent whose attested selectors include the entry's set, to no other
// agent (one with a subset, one never attested), and stops when the
// agent's re-attestation drops a selector.
func TestAuthorizeNodeEntry(t *testing.T) {
	node := hatest.Node(t)
	ctx := context.Background()
	e, err := node.CreateEntry(ctx, ha.Entry{SPIFFEID: "spiffe://example.org/fleet", TTL: 20 * time.Minute,
		NodeSelectors: []string{"aws_iid:account:1", "aws_iid:region:us-east-1"}})
	if err != nil {
		t.Fatal(err)
	}
	for agent, sels := range map[string][]string{
		"a": {"aws_iid:account:1", "aws_iid:region:us-east-1", "aws_iid:instance-id:i-1"},
		"b": {"aws_iid:account:1", "aws_iid:region:eu-west-1"},
	} {
		if err := node.RecordAttestation(ctx, ha.Attestation{Agent: agent, Attestor: "aws_iid", Selectors: sels}); err != nil {
			t.Fatal(err)
		}
	}
	a := New(spiffeid.RequireTrustDomainFromString("example.org"), node)
	id := spiffeid.RequireFromString
	fleet := id("spiffe://example.org/fleet")
	if g, err := a.Authorize(id("spiffe://example.org/tier0/agent/a"), fleet); err != nil || g != (ca.Grant{EntryID: e.ID, TTL: 20 * time.Minute}) {
		t.Fatalf("attested agent: %+v, %v", g, err)
	}
	for _, agent := range []string{"b", "never-attested"} {
		if _, err := a.Authorize(id("spiffe://example.org/tier0/agent/"+agent), fleet); !errors.Is(err, ca.ErrPermissionDenied) {
			t.Fatalf("agent %s: err = %v", agent, err)
		}
	}
	if err := node.RecordAttestation(ctx, ha.Attestation{Agent: "a", Attestor: "aws_iid", Selectors: []string{"aws_iid:account:1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authorize(id("spiffe://example.org/tier0/agent/a"), fleet); !errors.Is(err, ca.ErrPermissionDenied) {
		t.Fatalf("after re-attestation without the region: err = %v", err)
	}
}
