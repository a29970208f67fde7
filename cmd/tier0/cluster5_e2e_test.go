package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// TestCluster5NodesLoseTwo runs a 5-node cluster and SIGKILLs the leader
// and a follower at once during continuous issuance: the three survivors
// (still a quorum) elect a leader and keep issuing, every SVID received has
// exactly one record, and JWT-SVIDs minted by each node validate against
// the JWT bundle served by another node, before and after the loss.
func TestCluster5NodesLoseTwo(t *testing.T) {
	c := startCluster(t, 5)
	svid := c.agentSVID("a1", clusterID, c.apis)
	ag := c.client(svid, c.apis)
	is := startIssuing(t, ag, c.nodes[0].bundle(), clusterID, 4)
	pollUntil(t, 60*time.Second, func() bool { return is.count.Load() >= 100 })

	all := []int{0, 1, 2, 3, 4}
	c.checkJWTAcrossNodes(svid, all)

	l := c.leader()
	f := (l + 2) % 5
	for _, i := range []int{l, f} {
		c.nodes[i].kill()
	}
	before := is.count.Load()
	pollUntil(t, 90*time.Second, func() bool { return is.count.Load() >= before+100 })
	is.stop()
	var survivors []int
	for _, i := range all {
		if i != l && i != f {
			survivors = append(survivors, i)
		}
	}
	nl := c.leader(survivors...) // polls until a survivor names a live leader
	t.Logf("killed %s (leader) and %s; new leader %s; %d SVIDs received, %d failed attempts %v",
		nodeName(l), nodeName(f), nodeName(nl), is.count.Load(), is.failures.Load(), is.codeSummary())
	c.checkJWTAcrossNodes(svid, survivors)
	c.checkRecords(is)
}

// checkJWTAcrossNodes mints a JWT-SVID through each node in nodes (each
// signs with its own key) and validates it with go-spiffe against the JWT
// bundle that the next node in nodes serves: every node's key must have
// reached every other node's bundle (polled: a follower may lag the
// commit by a moment).
func (c *testCluster) checkJWTAcrossNodes(agent *x509svid.SVID, nodes []int) {
	t := c.t
	t.Helper()
	td := c.nodes[0].td()
	id := spiffeid.RequireFromString(clusterID)
	kids := map[string]bool{}
	for k, i := range nodes {
		via := c.client(agent, []string{c.apis[i]})
		resp, err := via.Agent().MintJWTSVID(context.Background(), &tier0v1.MintJWTSVIDRequest{SpiffeId: clusterID, Audience: []string{"db"}})
		if err != nil {
			t.Fatalf("mint JWT-SVID via %s: %v", nodeName(i), err)
		}
		other := nodes[(k+1)%len(nodes)]
		from := c.client(agent, []string{c.apis[other]})
		pollUntil(t, 30*time.Second, func() bool {
			b, err := from.Agent().GetBundle(context.Background(), &tier0v1.GetBundleRequest{})
			if err != nil {
				return false
			}
			keys := map[string]crypto.PublicKey{}
			for _, a := range b.GetJwtAuthorities() {
				pub, err := x509.ParsePKIXPublicKey(a.GetPublicKey())
				if err != nil {
					t.Fatalf("%s serves a bad JWT authority %s: %v", nodeName(other), a.GetKeyId(), err)
				}
				keys[a.GetKeyId()] = pub
			}
			svid, err := jwtsvid.ParseAndValidate(resp.GetToken(), jwtbundle.FromJWTAuthorities(td, keys), []string{"db"})
			if err != nil {
				return false // the signing node's key has not reached this node yet
			}
			if svid.ID != id {
				t.Fatalf("JWT-SVID via %s is for %s", nodeName(i), svid.ID)
			}
			kids[jwtKeyID(t, resp.GetToken())] = true
			return true
		})
	}
	if len(kids) != len(nodes) {
		t.Fatalf("%d nodes signed JWT-SVIDs with %d distinct keys; want one key per node", len(nodes), len(kids))
	}
}

// jwtKeyID returns the kid header of a JWT.
func jwtKeyID(t *testing.T, token string) string {
	t.Helper()
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil || len(tok.Headers) != 1 {
		t.Fatalf("parse JWT: %v", err)
	}
	return tok.Headers[0].KeyID
}
