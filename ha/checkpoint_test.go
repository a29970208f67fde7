package ha

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ca/record"
)

// cpSink is a sliceSink that also keeps checkpoints.
type cpSink struct {
	sliceSink
	cmu sync.Mutex
	cps []record.Checkpoint
}

func (s *cpSink) AppendCheckpoints(_ context.Context, cps []record.Checkpoint) error {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	for _, c := range cps {
		if len(s.cps) == 0 || c.Seq > s.cps[len(s.cps)-1].Seq {
			s.cps = append(s.cps, c)
		}
	}
	return nil
}

func (s *cpSink) checkpoints() []record.Checkpoint {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	return append([]record.Checkpoint(nil), s.cps...)
}

func TestCheckpoints(t *testing.T) {
	dir, clock := t.TempDir(), newTestClock()
	n := startNode(t, dir, clock)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	td := spiffeid.RequireTrustDomainFromString("example.org")
	rk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root, err := ca.NewRoot(td, rk, 24*time.Hour, clock.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ak, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := ca.NewAuditKeyCert(td, ca.Issuer{Signer: rk, Cert: root}, ak.Public(), 10*time.Hour, clock.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	sink := &cpSink{}
	go func() { _ = n.RunExporter(ctx, sink) }()
	go func() {
		_ = n.RunCheckpointer(ctx, CheckpointConfig{Signer: ak, CertDER: func() []byte { return cert.Raw }, Every: 10, Interval: time.Hour})
	}()
	commit := func(k int) {
		for range k {
			if err := n.Commit(ctx, []*record.Record{testRecord("cp")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Every 10: each batch of 12 records is due for a checkpoint wherever
	// the previous one fell (waited for, so that the checkpointer cannot
	// see all the records at once and sign only one).
	for want := range 2 {
		commit(12)
		waitFor(t, fmt.Sprintf("%d exported checkpoint(s)", want+1), func() bool { return len(sink.checkpoints()) >= want+1 })
	}
	commit(1)
	// Interval: the remaining records get a checkpoint once it elapses.
	clock.Add(2 * time.Hour)
	waitFor(t, "checkpoint at seq 25", func() bool {
		cps := sink.checkpoints()
		return len(cps) > 0 && cps[len(cps)-1].Seq == 25
	})
	recs := sink.snapshot()
	var prev uint64
	for _, c := range sink.checkpoints() {
		if err := c.Verify([]*x509.Certificate{root}); err != nil {
			t.Fatalf("checkpoint %d: %v", c.Seq, err)
		}
		if c.Prev == nil || *c.Prev != prev {
			t.Fatalf("checkpoint %d links to %v, want the previous checkpoint %d", c.Seq, c.Prev, prev)
		}
		prev = c.Seq
		if string(c.Head) != string(recs[c.Seq-1].Hash) {
			t.Fatalf("checkpoint %d head differs from the record's hash", c.Seq)
		}
	}
	waitFor(t, "pending checkpoints drained", func() bool { return len(n.pendingCheckpoints(1<<62)) == 0 })

	// The FSM refuses a checkpoint whose head is not the journal's.
	bad := record.Checkpoint{Seq: 25, Head: make([]byte, 32), SignedAt: clock.Now(), NodeID: "x", CertDER: cert.Raw, Signature: []byte{1}}
	if _, err := n.apply(ctx, "checkpoint", cmdCheckpoint, checkpointCmd{Op: "add", Checkpoint: bad}); err == nil {
		t.Fatal("a checkpoint with a wrong head was applied")
	}
	// The audit state survives a snapshot and restart.
	last := n.fsmAudit().LastSeq
	if err := n.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n2 := startNode(t, dir, clock)
	if got := n2.fsmAudit().LastSeq; got != last || last != 25 {
		t.Fatalf("after restart last checkpoint = %d, want %d (25)", got, last)
	}
}

// TestCheckpointLinkRefused: the FSM applies a checkpoint only if it links
// to the last one (a stale leader's checkpoint would break the chain).
func TestCheckpointLinkRefused(t *testing.T) {
	clock := newTestClock()
	n := startNode(t, t.TempDir(), clock)
	ctx := context.Background()
	for range 3 {
		if err := n.Commit(ctx, []*record.Record{testRecord("link")}); err != nil {
			t.Fatal(err)
		}
	}
	add := func(seq, prev uint64) error {
		var head []byte
		n.fsm.read(func(s *state) { head = bytes.Clone(s.hashAt(seq)) })
		c := record.Checkpoint{Seq: seq, Head: head, SignedAt: clock.Now(), NodeID: "n1", CertDER: []byte{1}, Signature: []byte{1}, Prev: &prev}
		_, err := n.apply(ctx, "checkpoint", cmdCheckpoint, checkpointCmd{Op: "add", Checkpoint: c})
		return err
	}
	if err := add(2, 0); err != nil {
		t.Fatalf("first checkpoint: %v", err)
	}
	if err := add(3, 1); err == nil || !strings.Contains(err.Error(), "links to checkpoint 1, but the last one is 2") {
		t.Fatalf("checkpoint with a stale link: %v", err)
	}
	if err := add(3, 2); err != nil {
		t.Fatalf("linked checkpoint: %v", err)
	}
	// The newest exported checkpoint follows the "exported" marks.
	for _, step := range []struct{ exported, want uint64 }{{0, 0}, {2, 2}, {3, 3}} {
		if step.exported > 0 {
			if _, err := n.apply(ctx, "export checkpoints", cmdCheckpoint, checkpointCmd{Op: "exported", Seq: step.exported}); err != nil {
				t.Fatal(err)
			}
		}
		if got := n.NewestExportedCheckpoint(); got != step.want {
			t.Fatalf("NewestExportedCheckpoint after exporting up to %d = %d, want %d", step.exported, got, step.want)
		}
	}
}

func (n *Node) fsmAudit() auditState {
	var a auditState
	n.fsm.read(func(s *state) { a = s.audit.clone() })
	return a
}
