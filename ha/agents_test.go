package ha

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// TestAgentRegistryLifecycle: attestation bumps the generation (a second
// token supersedes the first credential), evict and ban refuse every
// credential, ban refuses attestation and keeps the token, unban lets it
// attest again; the registry survives a snapshot.
func TestAgentRegistryLifecycle(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	n := startNode(t, t.TempDir(), clock)
	newToken := func(tok string) string {
		h := tokenHash(tok)
		if err := n.CreateTokenBy(ctx, h, "web1", clock.Now().Add(time.Hour), "spiffe://td/tier0/admin"); err != nil {
			t.Fatal(err)
		}
		return h
	}
	attest := func(h string) uint64 {
		t.Helper()
		sub, gen, err := n.Attest(ctx, h)
		if err != nil || sub != "web1" {
			t.Fatalf("attest: %q %d %v", sub, gen, err)
		}
		return gen
	}
	check := func(gen uint64, has bool) error { return n.CheckCredential(ctx, "web1", gen, has) }

	if err := check(0, false); err != nil {
		t.Fatalf("a pre-registry credential of an unknown agent: %v", err)
	}
	g1 := attest(newToken("t1"))
	if g1 != 1 || check(1, true) != nil {
		t.Fatalf("generation %d, check %v", g1, check(1, true))
	}
	if err := check(0, false); !errors.Is(err, ErrDenied) {
		t.Fatalf("a credential without generation after attestation: %v", err)
	}
	if _, _, err := n.Attest(ctx, tokenHash("t1")); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("reused token: %v", err)
	}
	g2 := attest(newToken("t2"))
	if err := check(g1, true); g2 != 2 || !errors.Is(err, ErrDenied) {
		t.Fatalf("the second token did not supersede the first credential: gen %d, %v", g2, err)
	}
	if err := n.AgentRenewed(ctx, "web1", g2, "abc", clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if a, _ := n.Agent("web1"); a.Serial != "abc" || a.RenewedNode != "n1" || a.State != AgentActive {
		t.Fatalf("after renewal: %+v", a)
	}
	if a, err := n.SetAgentState(ctx, "web1", "evict", "spiffe://td/tier0/admin"); err != nil || a.State != AgentEvicted {
		t.Fatalf("evict: %+v %v", a, err)
	}
	if err := check(g2, true); !errors.Is(err, ErrDenied) {
		t.Fatalf("evicted credential: %v", err)
	}
	g3 := attest(newToken("t3"))
	if check(g3, true) != nil || g3 != 3 {
		t.Fatalf("re-attest after evict: %d %v", g3, check(g3, true))
	}
	if _, err := n.SetAgentState(ctx, "web1", "ban", "x"); err != nil {
		t.Fatal(err)
	}
	h4 := newToken("t4")
	if _, _, err := n.Attest(ctx, h4); !errors.Is(err, ErrDenied) {
		t.Fatalf("banned attest: %v", err)
	}
	if err := check(g3, true); !errors.Is(err, ErrDenied) {
		t.Fatalf("banned credential: %v", err)
	}
	if _, err := n.SetAgentState(ctx, "web1", "unban", "x"); err != nil {
		t.Fatal(err)
	}
	if err := check(g3, true); !errors.Is(err, ErrDenied) {
		t.Fatalf("unban must not revive the old credential: %v", err)
	}
	if g := attest(h4); g != 4 {
		t.Fatalf("the token refused while banned works after unban: %d", g)
	}
	if _, err := n.SetAgentState(ctx, "nobody", "unban", "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unban unknown: %v", err)
	}

	// A node attestor's attestation bumps the generation too.
	if g, err := n.AttestSubject(ctx, "web1", []string{"k8s:sa:web"}); err != nil || g != 5 {
		t.Fatalf("attest subject: %d %v", g, err)
	}
	if a, _ := n.Agent("web1"); a.Selectors[0] != "k8s:sa:web" {
		t.Fatalf("selectors: %v", a.Selectors)
	}

	// Tokens: list shows creator and use; revoke refuses used tokens.
	h5 := newToken("t5")
	var seen bool
	for _, tk := range n.Tokens() {
		if tk.Hash == h5 && !tk.Used && tk.Creator == "spiffe://td/tier0/admin" && tk.Subject == "web1" {
			seen = true
		}
	}
	if !seen {
		t.Fatalf("token list: %+v", n.Tokens())
	}
	if _, err := n.RevokeToken(ctx, h4[:10], "x"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("revoke used: %v", err)
	}
	if _, err := n.RevokeToken(ctx, h5[:10], "x"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.Attest(ctx, h5); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("revoked token attested: %v", err)
	}

	// Snapshot round trip keeps the registry.
	snap := n.fsm.snapshot()
	var buf bytes.Buffer
	if err := snap.write(&buf); err != nil {
		t.Fatal(err)
	}
	f := newFSM(testLogger(t), n.fsm.m)
	if err := f.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	var a Agent
	f.read(func(s *state) { a = s.agents["web1"] })
	if a.Generation != 5 || a.State != AgentActive {
		t.Fatalf("restored: %+v", a)
	}
}
