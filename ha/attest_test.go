package ha

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"
)

// TestRecordAttestation: replay keys are used once (until they expire at
// the leader's clock, at most MaxReplayWindow); a refused attestation changes nothing;
// the agent's selectors are replaced by its last attestation.
func TestRecordAttestation(t *testing.T) {
	clock := newTestClock()
	n := startNode(t, t.TempDir(), clock)
	ctx := context.Background()
	a := Attestation{Agent: "host1", Attestor: "x", Selectors: []string{"x:b", "x:a", "x:a"},
		Keys: []ReplayKey{{Key: "x:token:1", Until: clock.Now().Add(time.Minute)}, {Key: "x:instance:1"}}}
	if err := n.RecordAttestation(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, ok := n.AgentAttestation("host1")
	if !ok || got.Attestor != "x" || !slices.Equal(got.Selectors, []string{"x:a", "x:b"}) {
		t.Fatalf("attestation = %+v, %v", got, ok)
	}
	// The token key again, with a new instance: refused, nothing stored.
	again := Attestation{Agent: "host2", Attestor: "x", Keys: []ReplayKey{{Key: "x:token:1"}, {Key: "x:instance:2"}}}
	if err := n.RecordAttestation(ctx, again); !errors.Is(err, ErrReplayed) {
		t.Fatalf("replay: err = %v", err)
	}
	if _, ok := n.AgentAttestation("host2"); ok {
		t.Fatal("refused attestation was stored")
	}
	// After the token key expired it may be used again; the instance key
	// (no expiry given) only after MaxReplayWindow.
	clock.Add(2 * time.Minute)
	if err := n.RecordAttestation(ctx, Attestation{Agent: "host2", Attestor: "x", Keys: []ReplayKey{{Key: "x:token:1"}, {Key: "x:instance:2"}}}); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if err := n.RecordAttestation(ctx, Attestation{Agent: "host1", Attestor: "x", Keys: []ReplayKey{{Key: "x:instance:1"}}}); !errors.Is(err, ErrReplayed) {
		t.Fatalf("instance key reused: err = %v", err)
	}
	clock.Add(MaxReplayWindow)
	if err := n.RecordAttestation(ctx, Attestation{Agent: "host1", Attestor: "x", Keys: []ReplayKey{{Key: "x:instance:1"}}}); err != nil {
		t.Fatalf("instance key after MaxReplayWindow: %v", err)
	}
	if err := n.RecordAttestation(ctx, Attestation{Attestor: "x"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no agent: err = %v", err)
	}
}

// TestNodeEntries: a node-selector entry applies to every agent whose
// attested selectors include its set and to no other; it survives a
// snapshot and is deleted by ID; an old-type create cannot carry node
// selectors.
func TestNodeEntries(t *testing.T) {
	if cmdCreateNodeEntry&ignorableFlag != 0 || cmdRecordAttestation&ignorableFlag != 0 {
		t.Fatal("attestation commands must not be ignorable")
	}
	clock := newTestClock()
	n := startNode(t, t.TempDir(), clock)
	ctx := context.Background()
	e, err := n.CreateEntry(ctx, Entry{SPIFFEID: "spiffe://x/fleet", TTL: time.Hour, NodeSelectors: []string{"k8s_psat:cluster:prod", "k8s_psat:agent_ns:spire"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e.NodeSelectors, []string{"k8s_psat:agent_ns:spire", "k8s_psat:cluster:prod"}) || e.Agent != "" {
		t.Fatalf("entry = %+v", e)
	}
	if _, err := n.CreateEntry(ctx, Entry{SPIFFEID: "spiffe://x/fleet", NodeSelectors: []string{"k8s_psat:cluster:prod", "k8s_psat:agent_ns:spire"}}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate: err = %v", err)
	}
	if _, err := n.CreateEntry(ctx, Entry{Agent: "a", SPIFFEID: "spiffe://x/fleet", NodeSelectors: []string{"s:1"}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("agent and node selectors: err = %v", err)
	}
	if _, err := n.CreateEntry(ctx, Entry{Agent: "plain", SPIFFEID: "spiffe://x/own", TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []Attestation{
		{Agent: "prod1", Attestor: "k8s_psat", Selectors: []string{"k8s_psat:cluster:prod", "k8s_psat:agent_ns:spire", "k8s_psat:agent_node_name:n1"}},
		{Agent: "dev1", Attestor: "k8s_psat", Selectors: []string{"k8s_psat:cluster:dev", "k8s_psat:agent_ns:spire"}},
		{Agent: "plain", Attestor: "x509pop", Selectors: []string{"k8s_psat:cluster:prod"}}, // only one of the two
	} {
		if err := n.RecordAttestation(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if got := n.EntriesFor("prod1"); len(got) != 1 || got[0].ID != e.ID {
		t.Fatalf("prod1 entries = %+v", got)
	}
	if got := n.EntriesFor("dev1"); len(got) != 0 {
		t.Fatalf("dev1 entries = %+v", got)
	}
	if got := n.EntriesFor("plain"); len(got) != 1 || got[0].SPIFFEID != "spiffe://x/own" {
		t.Fatalf("plain entries = %+v", got)
	}
	if got := n.EntriesFor("never-attested"); len(got) != 0 {
		t.Fatalf("unknown agent entries = %+v", got)
	}
	if all := n.ListEntries(""); len(all) != 2 {
		t.Fatalf("all entries = %+v", all)
	}

	// Snapshot round trip keeps entries, selectors and used keys.
	f := n.fsm
	dump := stateDump(t, f)
	g := newTestFSM(t)
	if err := g.Restore(io.NopCloser(bytes.NewReader(dump))); err != nil {
		t.Fatal(err)
	}
	if len(g.s.nodeEntries) != 1 || g.s.nodeEntries[0].ID != e.ID || len(g.s.nodeEntriesFor("prod1")) != 1 {
		t.Fatalf("after restore: node entries %+v", g.s.nodeEntries)
	}

	if err := n.DeleteEntry(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	if got := n.EntriesFor("prod1"); len(got) != 0 {
		t.Fatalf("after delete: %+v", got)
	}

	// The old create types drop node selectors as an old node would.
	h := newTestFSM(t)
	stray := Entry{ID: "e9", Agent: "a", SPIFFEID: "spiffe://x/db", NodeSelectors: []string{"s:1"}}
	if r, ok := applyData(h, mustCommand(t, cmdCreateEntry, createEntryCmd{stray})).(Entry); !ok || r.NodeSelectors != nil {
		t.Fatalf("old-type create kept node selectors: %+v", r)
	}
}

// TestAttestationReplayAcrossNodes: evidence used through one node is
// refused through every other (the follower forwards the write and gets
// the leader's ErrReplayed intact), and a node-selector entry applies on
// every node once the attestation has replicated.
func TestAttestationReplayAcrossNodes(t *testing.T) {
	nodes, _, _, _ := startTLSCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := Attestation{Agent: "prod1", Attestor: "k8s_psat", Selectors: []string{"k8s_psat:cluster:prod"}, Keys: []ReplayKey{{Key: "k8s_psat:pod_uid:prod:1"}}}
	if err := nodes[1].RecordAttestation(ctx, a); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Node{nodes[0], nodes[2], nodes[1]} {
		if err := n.RecordAttestation(ctx, a); !errors.Is(err, ErrReplayed) {
			t.Fatalf("replay through %s: err = %v", n.cfg.NodeID, err)
		}
	}
	if _, err := nodes[2].CreateEntry(ctx, Entry{SPIFFEID: "spiffe://example.org/fleet", NodeSelectors: []string{"k8s_psat:cluster:prod"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replication", func() bool {
		for _, n := range nodes {
			if e := n.EntriesFor("prod1"); len(e) != 1 || e[0].SPIFFEID != "spiffe://example.org/fleet" {
				return false
			}
		}
		return true
	})
}
