package ha

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ca/record"
)

// racingSigner runs during its first Sign what a loaded leader does while
// a checkpoint is signed: a record is appended and the exporter marks the
// checkpoint's seq exported. It returns once the export either happened
// or is held back by the checkpoint gate.
type racingSigner struct {
	crypto.Signer
	race func()
}

func (s *racingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if f := s.race; f != nil {
		s.race = nil
		f()
	}
	return s.Signer.Sign(r, digest, opts)
}

// TestCheckpointNotRacedByExport: under load the exporter used to mark the
// checkpoint's seq exported while the checkpoint was being signed, and the
// FSM refused it ("head does not match the journal"). The gate holds the
// export until the checkpoint is applied: no checkpoint fails.
func TestCheckpointNotRacedByExport(t *testing.T) {
	clock := newTestClock()
	n := startNode(t, t.TempDir(), clock)
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
	for range 5 {
		if err := n.Commit(ctx, []*record.Record{testRecord("race")}); err != nil {
			t.Fatal(err)
		}
	}
	blocked := make(chan struct{})
	n.testExportBlocked = func() { close(blocked) }
	exported := make(chan error, 1)
	signer := &racingSigner{Signer: ak, race: func() {
		if err := n.Commit(ctx, []*record.Record{testRecord("race")}); err != nil {
			t.Error(err)
		}
		go func() { exported <- n.markExported(ctx, 5) }()
		select {
		case <-blocked:
		case err := <-exported:
			exported <- err // the export went first: the checkpoint will meet it
		}
	}}
	reg := prometheus.NewRegistry()
	go func() {
		_ = n.RunCheckpointer(ctx, CheckpointConfig{Signer: signer, CertDER: func() []byte { return cert.Raw }, Every: 5, Interval: time.Hour, Registerer: reg})
	}()
	waitFor(t, "checkpoint at seq 5", func() bool { return n.fsmAudit().LastSeq >= 5 })
	if err := <-exported; err != nil {
		t.Fatalf("export after the checkpoint: %v", err)
	}
	if got := n.JournalStatus().ExportedSeq; got != 5 {
		t.Fatalf("exported seq %d, want 5", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "tier0_audit_checkpoint_errors_total" {
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v != 0 {
				t.Fatalf("%v checkpoint(s) failed, want 0", v)
			}
		}
	}
	if n.fsmAudit().LastSeq != 5 {
		t.Fatalf("last checkpoint at %d, want 5 (signed before the sixth record's export)", n.fsmAudit().LastSeq)
	}
}
