package ha

import (
	"bytes"
	"context"
	"io"
	"slices"
	"testing"
	"time"
)

// TestCreateEntryFederated: FederatesWith travels only in the new command
// type, which is not ignorable (a node that predates it refuses it rather
// than storing the entry without it); the old type drops a stray field the
// way an old node would, so every node applies the same entry; the field
// survives a snapshot.
func TestCreateEntryFederated(t *testing.T) {
	if cmdCreateEntryFederated&ignorableFlag != 0 {
		t.Fatal("cmdCreateEntryFederated is ignorable: an old node would skip the entry")
	}
	f := newTestFSM(t)
	fed := Entry{ID: "e1", Agent: "a", SPIFFEID: "spiffe://x/web", FederatesWith: []string{"partner.example"}}
	if r, ok := applyData(f, mustCommand(t, cmdCreateEntryFederated, createEntryCmd{fed})).(Entry); !ok || !slices.Equal(r.FederatesWith, fed.FederatesWith) {
		t.Fatalf("federated create = %+v", r)
	}
	stray := Entry{ID: "e2", Agent: "a", SPIFFEID: "spiffe://x/db", FederatesWith: []string{"partner.example"}}
	if r, ok := applyData(f, mustCommand(t, cmdCreateEntry, createEntryCmd{stray})).(Entry); !ok || r.FederatesWith != nil {
		t.Fatalf("old-type create kept federates_with: %+v", r)
	}
	dump := stateDump(t, f)
	g := newTestFSM(t)
	if err := g.Restore(io.NopCloser(bytes.NewReader(dump))); err != nil {
		t.Fatal(err)
	}
	if e1, _ := g.s.entry("e1"); !slices.Equal(e1.FederatesWith, fed.FederatesWith) {
		t.Fatalf("after restore federates_with = %v", e1.FederatesWith)
	}
	if !bytes.Contains(dump, []byte(`"federates_with":["partner.example"]`)) {
		t.Fatalf("snapshot lacks federates_with: %s", dump)
	}

	n := startNode(t, t.TempDir(), newTestClock())
	ctx := context.Background()
	if _, err := n.CreateEntry(ctx, Entry{Agent: "a", SPIFFEID: "spiffe://x/web", TTL: time.Hour, FederatesWith: []string{"p.example", "q.example"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.CreateEntry(ctx, Entry{Agent: "a", SPIFFEID: "spiffe://x/db", TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	got := n.EntriesFor("a")
	if len(got) != 2 || got[0].SPIFFEID != "spiffe://x/db" || got[0].FederatesWith != nil ||
		!slices.Equal(got[1].FederatesWith, []string{"p.example", "q.example"}) {
		t.Fatalf("entries = %+v", got)
	}
}
