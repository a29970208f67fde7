package ha

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tier0-ca/tier0/ca/record"
)

// events returns the admin event records in n's journal.
func events(n *Node) []*record.Record {
	var out []*record.Record
	for _, r := range n.Tail(0, 1<<30) {
		if r.IsEvent() {
			out = append(out, r)
		}
	}
	return out
}

// TestStateChangesAreRecorded: each state change appends one admin event
// record, chained with the certificates, naming the actor from the
// context (the node itself without one), the subject and the content; a
// refused change records nothing; no token secret appears.
func TestStateChangesAreRecorded(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	n := startNode(t, t.TempDir(), clock, func(c *Config) { c.SelfID = "spiffe://example.org/tier0/node/n1" })
	admin := WithActor(ctx, "spiffe://example.org/tier0/admin")
	e, err := n.CreateEntry(admin, Entry{Agent: "host-1", SPIFFEID: "spiffe://example.org/web", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.CreateEntry(admin, Entry{Agent: "host-1", SPIFFEID: "spiffe://example.org/web"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate entry: %v", err)
	}
	if err := n.Commit(ctx, []*record.Record{testRecord("c")}); err != nil {
		t.Fatal(err)
	}
	if err := n.DeleteEntry(admin, "no-such-entry"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete missing entry: %v", err)
	}
	if err := n.DeleteEntry(admin, e.ID); err != nil {
		t.Fatal(err)
	}
	secret := "the-join-token-secret"
	if err := n.CreateTokenBy(admin, tokenHash(secret), "host-2", clock.Now().Add(time.Hour), "spiffe://example.org/tier0/admin"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.Attest(ctx, tokenHash(secret)); err != nil { // no actor in the context: the node
		t.Fatal(err)
	}
	if _, err := n.SetAgentState(admin, "host-2", "ban", "spiffe://example.org/tier0/admin"); err != nil {
		t.Fatal(err)
	}
	if err := n.SetBundle(ctx, [][]byte{[]byte("root")}, "example.org"); err != nil {
		t.Fatal(err)
	}
	if err := n.PublishJWTKey(ctx, JWTKey{ID: "k1", PublicKey: []byte{1}, NotAfter: clock.Now().Add(time.Hour), Node: "n1"}); err != nil {
		t.Fatal(err)
	}

	tail := n.Tail(0, 1<<30)
	verifyChain(t, tail, 1, record.Genesis)
	type want struct{ action, subject, actor, detail string }
	wants := []want{
		{"entry.create", "spiffe://example.org/web", "spiffe://example.org/tier0/admin", e.ID},
		{"entry.delete", "spiffe://example.org/web", "spiffe://example.org/tier0/admin", e.ID},
		{"token.create", "host-2", "spiffe://example.org/tier0/admin", tokenHash(secret)},
		{"token.consume", "host-2", "spiffe://example.org/tier0/node/n1", tokenHash(secret)},
		{"agent.ban", "host-2", "spiffe://example.org/tier0/admin", `"op":"ban"`},
		{"bundle.set", "spiffe://example.org", "spiffe://example.org/tier0/node/n1", `"trust_domain":"example.org"`},
		{"jwt.publish", "spiffe://example.org", "spiffe://example.org/tier0/node/n1", `"id":"k1"`},
	}
	evs := events(n)
	if len(evs) != len(wants) || len(tail) != len(wants)+1 {
		t.Fatalf("%d events in %d records, want %d events and one certificate", len(evs), len(tail), len(wants))
	}
	for i, w := range wants {
		r := evs[i]
		if r.Action != w.action || r.SPIFFEID != w.subject || r.AgentID != w.actor || r.NodeID != "n1" ||
			!strings.Contains(string(r.Detail), w.detail) || r.Serial == "" || !r.NotBefore.Equal(r.CommittedAt) {
			t.Errorf("event %d = %s %s by %s on %s: %s; want %+v", i, r.Action, r.SPIFFEID, r.AgentID, r.NodeID, r.Detail, w)
		}
		if err := record.CheckEvent(r); err != nil || strings.Contains(string(r.Detail), secret) {
			t.Errorf("event %d: %v, detail %s", i, err, r.Detail)
		}
		if !json.Valid(r.Detail) {
			t.Errorf("event %d: detail is not JSON: %s", i, r.Detail)
		}
	}
	if tail[1].IsEvent() {
		t.Errorf("record 2 is %s, want the certificate committed between the events", tail[1].Kind())
	}
}

// TestEventedRefusedWritesNothing: an evented entry whose command every
// node refuses leaves state and journal as they were; one whose event is
// malformed never reaches the log.
func TestEventedRefusedWritesNothing(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, t.TempDir(), newTestClock())
	before := n.JournalStatus()
	if _, err := n.applyEvent(ctx, "delete entry", cmdDeleteEntry, deleteEntryCmd{ID: "nope"}, event{action: "entry.delete", subject: "x"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused command: %v", err)
	}
	if _, err := n.applyEvent(ctx, "bad", cmdDeleteEntry, deleteEntryCmd{ID: "nope"}, event{action: "entry.delete"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("event without subject: %v", err)
	}
	if _, err := n.applyEvent(ctx, "bad", cmdRecords, recordsCmd{}, event{action: "x", subject: "x"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("records inside an event: %v", err)
	}
	if got := n.JournalStatus(); got.Seq != before.Seq {
		t.Fatalf("journal moved from %d to %d", before.Seq, got.Seq)
	}
}

// TestEventedStaleExpectLatches: an evented entry proposed for another
// journal position than this node's cannot be applied; the node latches
// before the command runs (no entry created).
func TestEventedStaleExpectLatches(t *testing.T) {
	f := newFSM(testLogger(t), newMetrics(nil))
	inner, _ := json.Marshal(createEntryCmd{Entry: Entry{ID: "e1", Agent: "a", SPIFFEID: "spiffe://example.org/w"}})
	c := eventedCmd{Op: cmdCreateEntry, Cmd: inner, Now: time.Unix(1, 0),
		Event:  wireEvent{ID: "1", Action: "entry.create", Subject: "spiffe://example.org/w", Actor: "spiffe://example.org/tier0/admin"},
		Expect: &recordsExpect{Term: 1, Seq: 5, Prev: record.Genesis, Head: record.Genesis}}
	data, err := encodeCommand(cmdEvented, c)
	if err != nil {
		t.Fatal(err)
	}
	resp := f.Apply(&raft.Log{Type: raft.LogCommand, Index: 1, Term: 1, Data: data})
	if err, ok := resp.(error); !ok || !errors.Is(err, ErrDiverged) {
		t.Fatalf("Apply = %v, want the divergence latch", resp)
	}
	if len(f.s.entries) != 0 || f.s.seq != 0 {
		t.Fatalf("state changed: %d entries, seq %d", len(f.s.entries), f.s.seq)
	}
}
