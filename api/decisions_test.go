package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/roles"
	"github.com/tier0-ca/tier0/internal/server/decisions"
	"github.com/tier0-ca/tier0/storage"
)

// TestEveryRefusalIsADecision: each class of refusal on the issuance and
// admin paths (per item: reserved ID, foreign trust domain, no entry;
// per call: role-level PermissionDenied either way, bad input, NotFound,
// Unavailable, unauthenticated) leaves exactly one decision row with the
// caller, the requested thing, the code and the rule; an allow leaves
// one allow. The decision log is the real one (internal/server/decisions)
// writing to a real SQLite record store.
func TestEveryRefusalIsADecision(t *testing.T) {
	ctx := context.Background()
	store, err := storage.OpenAudit(ctx, "sqlite:"+filepath.Join(t.TempDir(), "records.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	dlog, err := decisions.New(decisions.Config{NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *Config) { c.Decisions = dlog })
	f.grant(t, "a1", "spiffe://example.org/web")
	agentID, _ := roles.AgentID(testTD, "a1")
	agent := f.clientAs(t, agentID).Agent()
	admin := f.clientAs(t, roles.AdminID(testTD))
	auditor := f.clientAs(t, roles.AuditorID(testTD))
	csr := func(id string) []byte {
		der, _, err := client.NewCSR(spiffeid.RequireFromString(id))
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	mint := func(ids ...string) func() error {
		return func() error {
			req := &tier0v1.MintX509SVIDsRequest{}
			for _, id := range ids {
				req.Items = append(req.Items, &tier0v1.MintItem{Csr: csr(id)})
			}
			_, err := agent.MintX509SVIDs(ctx, req)
			return err
		}
	}
	// A caller with no client certificate at all.
	pool := x509.NewCertPool()
	for _, r := range f.bundle.X509Authorities() {
		pool.AddCert(r)
	}
	anon, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, InsecureSkipVerify: true}))) //nolint:gosec // the test checks the server's refusal, not its identity
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = anon.Close() })

	const (
		agentSVC = "/tier0.v1.Agent/"
		adminSVC = "/tier0.v1.Admin/"
	)
	a1, adm, aud := agentID.String(), roles.AdminID(testTD).String(), roles.AuditorID(testTD).String()
	type row struct{ caller, requested, code, reason, kind string }
	cases := []struct {
		name string
		call func() error
		want []row // newest last
	}{
		{"allowed", mint("spiffe://example.org/web"),
			[]row{{a1, "spiffe://example.org/web", "OK", "entry a1spiffe://example.org/web", "allow"}}},
		{"reserved path", mint("spiffe://example.org/tier0/admin"),
			[]row{{a1, "spiffe://example.org/tier0/admin", "InvalidArgument", "reserved", "deny"}}},
		{"foreign trust domain", mint("spiffe://other.org/web"),
			[]row{{a1, "spiffe://other.org/web", "InvalidArgument", "other.org", "deny"}}},
		{"no entry, and one granted in the same batch", mint("spiffe://example.org/db", "spiffe://example.org/web"),
			[]row{{a1, "spiffe://example.org/db", "PermissionDenied", "may not obtain", "deny"},
				{a1, "spiffe://example.org/web", "OK", "entry ", "allow"}}},
		{"empty batch", func() error { _, err := agent.MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{}); return err },
			[]row{{a1, agentSVC + "MintX509SVIDs", "InvalidArgument", agentSVC + "MintX509SVIDs: invalid argument: no items", "deny"}}},
		{"jwt not configured", func() error {
			_, err := agent.MintJWTSVID(ctx, &tier0v1.MintJWTSVIDRequest{SpiffeId: "spiffe://example.org/web", Audience: []string{"a"}})
			return err
		}, []row{{a1, "spiffe://example.org/web", "Unavailable", "jwt-svids are not configured", "fail"}}},
		{"admin calls mint", func() error {
			_, err := admin.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: csr("spiffe://example.org/web")}}})
			return err
		}, []row{{adm, agentSVC + "MintX509SVIDs", "PermissionDenied", "may not call " + agentSVC + "MintX509SVIDs", "deny"}}},
		{"auditor calls jwt mint", func() error {
			_, err := auditor.Agent().MintJWTSVID(ctx, &tier0v1.MintJWTSVIDRequest{SpiffeId: "spiffe://example.org/web"})
			return err
		}, []row{{aud, "spiffe://example.org/web", "PermissionDenied", "may not call", "deny"}}},
		{"agent calls admin", func() error {
			_, err := tier0v1.NewAdminClient(f.clientAs(t, agentID)).CreateEntry(ctx, &tier0v1.CreateEntryRequest{Agent: "a1", SpiffeId: "spiffe://example.org/db"})
			return err
		}, []row{{a1, "spiffe://example.org/db", "PermissionDenied", "may not call " + adminSVC + "CreateEntry", "deny"}}},
		{"admin asks for a reserved entry", func() error {
			_, err := admin.Admin().CreateEntry(ctx, &tier0v1.CreateEntryRequest{Agent: "a1", SpiffeId: "spiffe://example.org/tier0/admin"})
			return err
		}, []row{{adm, "spiffe://example.org/tier0/admin", "InvalidArgument", adminSVC + "CreateEntry: ", "deny"}}},
		{"admin deletes a missing entry", func() error {
			_, err := admin.Admin().DeleteEntry(ctx, &tier0v1.DeleteEntryRequest{Id: "no-such-entry"})
			return err
		}, []row{{adm, "no-such-entry", "NotFound", adminSVC + "DeleteEntry: ", "deny"}}},
		{"no client certificate", func() error {
			_, err := tier0v1.NewAdminClient(anon).DeleteEntry(ctx, &tier0v1.DeleteEntryRequest{Id: "e1"})
			return err
		}, []row{{"", "e1", "Unauthenticated", "unauthenticated caller from 127.0.0.1:", "deny"}}},
	}
	var last int64
	for _, c := range cases {
		_ = c.call() // a mint answers per item; the rows say what happened
		if err := dlog.Flush(ctx, store); err != nil {
			t.Fatal(err)
		}
		ds, err := store.QueryDecisions(ctx, storage.DecisionFilter{Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		var got []storage.Decision
		for i := len(ds) - 1; i >= 0; i-- {
			if ds[i].ID > last {
				got = append(got, ds[i])
			}
		}
		if len(ds) > 0 {
			last = ds[0].ID
		}
		if len(got) != len(c.want) {
			t.Fatalf("%s: %d decision rows, want %d: %+v", c.name, len(got), len(c.want), got)
		}
		for i, w := range c.want {
			g := got[i]
			kind := decisions.Kind(g.Allowed, g.Code, g.Reason)
			if g.Caller != w.caller || g.Requested != w.requested || g.Code != w.code || !strings.Contains(g.Reason, w.reason) ||
				kind != w.kind || g.NodeID != "n1" || g.At.IsZero() {
				t.Errorf("%s: row %d = %+v (%s)\nwant caller %q requested %q code %s reason containing %q, %s",
					c.name, i, g, kind, w.caller, w.requested, w.code, w.reason, w.kind)
			}
		}
	}
}
