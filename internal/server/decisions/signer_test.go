package decisions

import (
	"context"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/storage"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

// TestSignerCoversTheChain: a round signs the decision chain's head once
// it grew (linked to the checkpoint before), signs nothing when it did
// not, and refuses to sign over a chain a decision was deleted from.
func TestSignerCoversTheChain(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	k := storagetest.NewAuditKey(t)
	dc := s.AuditStore.(storage.DecisionChainStore)
	sg, err := NewSigner(SignerConfig{Store: dc, Leader: func() bool { return true }, Signer: k.Signer,
		CertDER: func() []byte { return k.Cert.Raw }, NodeID: "n1", Clock: func() time.Time { return storagetest.Base.Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := newLog(t, Config{})
	write := func(n int) {
		for range n {
			allow(d)
			deny(d)
		}
		if err := d.Flush(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	write(5)
	for range 2 { // the second round finds nothing new
		if err := sg.Round(ctx); err != nil {
			t.Fatal(err)
		}
	}
	write(3)
	if err := sg.Round(ctx); err != nil {
		t.Fatal(err)
	}
	cps, err := dc.DecisionCheckpoints(ctx)
	if err != nil || len(cps) != 2 || cps[0].Seq != 10 || cps[0].Prev != 0 || cps[1].Seq != 16 || cps[1].Prev != 10 {
		t.Fatalf("decision checkpoints %+v, %v; want 10 and 16, linked", cps, err)
	}
	res, err := storage.VerifyDecisions(ctx, dc, k.Roots())
	if err != nil || !res.OK() || res.Checked != 16 || res.Checkpoints != 2 || res.LastCheckpoint != 16 {
		t.Fatalf("VerifyDecisions = %+v, %v", res, err)
	}
	// A fresh signer (another leader) over a chain with a gap refuses.
	write(2)
	ds, err := dc.DecisionChain(ctx, 17, 10)
	if err != nil || len(ds) != 4 {
		t.Fatalf("chain after 16: %d, %v", len(ds), err)
	}
	ds[1].Reason = "edited"
	sg2, _ := NewSigner(SignerConfig{Store: &editedChain{DecisionChainStore: dc, edited: ds[1]}, Leader: func() bool { return true },
		Signer: k.Signer, CertDER: func() []byte { return k.Cert.Raw }})
	if err := sg2.Round(ctx); err == nil {
		t.Fatal("signed over an edited decision")
	}
}

// editedChain serves one decision edited, as a tampered store would.
type editedChain struct {
	storage.DecisionChainStore
	edited storage.Decision
}

func (e *editedChain) DecisionChain(ctx context.Context, from uint64, limit int) ([]storage.Decision, error) {
	ds, err := e.DecisionChainStore.DecisionChain(ctx, from, limit)
	for i := range ds {
		if ds[i].Seq == e.edited.Seq {
			ds[i] = e.edited
		}
	}
	return ds, err
}
