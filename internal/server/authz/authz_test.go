package authz

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/hatest"
)

func TestAuthorize(t *testing.T) {
	node := hatest.Node(t)
	ctx := context.Background()
	for _, e := range []ha.Entry{
		{ID: "e1", Agent: "web", SPIFFEID: "spiffe://example.org/web", TTL: 20 * time.Minute},
		{ID: "e2", Agent: "db", SPIFFEID: "spiffe://example.org/db"},
	} {
		if _, err := node.CreateEntry(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	a := New(spiffeid.RequireTrustDomainFromString("example.org"), node)
	id := spiffeid.RequireFromString

	g, err := a.Authorize(id("spiffe://example.org/tier0/agent/web"), id("spiffe://example.org/web"))
	if err != nil || g != (ca.Grant{EntryID: "e1", TTL: 20 * time.Minute}) {
		t.Fatalf("allow: %+v, %v", g, err)
	}
	for _, c := range []struct {
		name, agent, id, want string
	}{
		{"other agent's entry", "spiffe://example.org/tier0/agent/db", "spiffe://example.org/web",
			`permission denied: no entry grants spiffe://example.org/web to agent "db"`},
		{"agent without entries", "spiffe://example.org/tier0/agent/nobody", "spiffe://example.org/web",
			`permission denied: no entry grants spiffe://example.org/web to agent "nobody"`},
		{"admin is not an agent", "spiffe://example.org/tier0/admin", "spiffe://example.org/web",
			"permission denied: spiffe://example.org/tier0/admin is not an agent of example.org"},
		{"node is not an agent", "spiffe://example.org/tier0/node/n1", "spiffe://example.org/web",
			"permission denied: spiffe://example.org/tier0/node/n1 is not an agent of example.org"},
		{"agent of another trust domain", "spiffe://other.org/tier0/agent/web", "spiffe://example.org/web",
			"permission denied: spiffe://other.org/tier0/agent/web is not an agent of example.org"},
		{"extra segment after the agent name", "spiffe://example.org/tier0/agent/web/x", "spiffe://example.org/web",
			"permission denied: spiffe://example.org/tier0/agent/web/x is not an agent of example.org"},
		{"agent path not under /tier0", "spiffe://example.org/agent/web", "spiffe://example.org/web",
			"permission denied: spiffe://example.org/agent/web is not an agent of example.org"},
		{"child of a granted ID", "spiffe://example.org/tier0/agent/web", "spiffe://example.org/web/x",
			`permission denied: no entry grants spiffe://example.org/web/x to agent "web"`},
		{"ID with a granted ID as prefix", "spiffe://example.org/tier0/agent/web", "spiffe://example.org/webx",
			`permission denied: no entry grants spiffe://example.org/webx to agent "web"`},
		{"granted path in another trust domain", "spiffe://example.org/tier0/agent/web", "spiffe://other.org/web",
			`permission denied: no entry grants spiffe://other.org/web to agent "web"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			g, err := a.Authorize(id(c.agent), id(c.id))
			if !errors.Is(err, ca.ErrPermissionDenied) || err.Error() != c.want || g != (ca.Grant{}) {
				t.Fatalf("got %+v, %v; want %q", g, err, c.want)
			}
		})
	}

	// Entries are read at each call: a deleted entry no longer grants.
	if err := node.DeleteEntry(ctx, "e1"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authorize(id("spiffe://example.org/tier0/agent/web"), id("spiffe://example.org/web")); !errors.Is(err, ca.ErrPermissionDenied) {
		t.Fatalf("after delete: %v", err)
	}
}

// The one-entry lookup (a binary search of the agent's index) grants what
// a scan of every entry of the agent grants, for each of many IDs, and
// nothing for IDs between them or past them; another agent's entries
// never match.
func TestAuthorizeLookupMatchesScan(t *testing.T) {
	node := hatest.Node(t)
	ctx := context.Background()
	var es []ha.Entry
	for i := range 40 {
		agent := "a"
		if i%4 == 3 {
			agent = "b"
		}
		es = append(es, ha.Entry{ID: fmt.Sprintf("e%02d", i), Agent: agent, SPIFFEID: fmt.Sprintf("spiffe://example.org/w%02d", i)})
	}
	for _, e := range es {
		if _, err := node.CreateEntry(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	a := New(spiffeid.RequireTrustDomainFromString("example.org"), node)
	agent := spiffeid.RequireFromString("spiffe://example.org/tier0/agent/a")
	for i := range 41 {
		for _, suffix := range []string{"", "x"} {
			id := spiffeid.RequireFromString(fmt.Sprintf("spiffe://example.org/w%02d%s", i, suffix))
			var want ca.Grant
			for _, e := range node.EntriesFor("a") {
				if e.SPIFFEID == id.String() {
					want = ca.Grant{EntryID: e.ID, TTL: e.TTL}
					break
				}
			}
			g, err := a.Authorize(agent, id)
			if g != want || (want == ca.Grant{}) != errors.Is(err, ca.ErrPermissionDenied) {
				t.Fatalf("%s: %+v %v, want %+v", id, g, err, want)
			}
			if i < 40 && i%4 != 3 && suffix == "" && g.EntryID != fmt.Sprintf("e%02d", i) {
				t.Fatalf("%s: entry %s, want e%02d", id, g.EntryID, i)
			}
		}
	}
}
