package ha

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
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
	for range 25 {
		if err := n.Commit(ctx, []*record.Record{testRecord("cp")}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "two exported checkpoints", func() bool { return len(sink.checkpoints()) >= 2 })
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
	// ...and one that does not link to the last checkpoint (a stale leader's).
	for range 2 {
		if err := n.Commit(ctx, []*record.Record{testRecord("cp")}); err != nil {
			t.Fatal(err)
		}
	}
	var seq uint64
	var head []byte
	n.fsm.read(func(s *state) { seq, head = s.seq, bytes.Clone(s.head) })
	stale := uint64(10)
	if err := n.checkpoint(ctx, CheckpointConfig{Signer: ak, CertDER: func() []byte { return cert.Raw }}, seq, stale, head, clock.Now()); err == nil || !strings.Contains(err.Error(), "links to checkpoint 10, but the last one is 25") {
		t.Fatalf("stale checkpoint: %v", err)
	}
	// The audit state survives a snapshot and restart.
	last := n.fsmAudit().LastSeq
	if err := n.Raft().Snapshot().Error(); err != nil {
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

func (n *Node) fsmAudit() auditState {
	var a auditState
	n.fsm.read(func(s *state) { a = s.audit.clone() })
	return a
}
