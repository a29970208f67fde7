package tlog

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage/sqlite"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

// signedStore is a SQLite store holding n records of chain salt with chain
// checkpoints every 10, and the tree signer's checkpoints at each size in
// sizes.
func signedStore(t *testing.T, k *storagetest.AuditKey, salt string, n int, sizes ...int) *sqlite.Store {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.New(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "r.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	recs := storagetest.Chain(salt, 1, n, record.Genesis)
	storagetest.Append(t, s, recs, 50)
	cfg := SignerConfig{Store: s, Leader: func() bool { return true }, Signer: k.Signer, CertDER: func() []byte { return k.Cert.Raw },
		Roots: func() []*x509.Certificate { return k.Roots() }, Origin: Origin("example.org"), Clock: time.Now}
	tree := &Tree{}
	prev := uint64(0)
	for _, size := range sizes {
		cp := k.CheckpointAfter(t, recs[size-1], prev)
		prev = uint64(size)
		if err := s.AppendCheckpoints(ctx, []record.Checkpoint{cp}); err != nil {
			t.Fatal(err)
		}
		if err := SignRound(ctx, cfg, tree); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func TestProveAndVerify(t *testing.T) {
	ctx := context.Background()
	k := storagetest.NewAuditKey(t)
	s := signedStore(t, k, "prove", 120, 40, 100)
	p := Prover{Store: s}
	for _, seq := range []uint64{1, 17, 100} {
		pr, err := p.Inclusion(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := json.Marshal(pr)
		if err != nil {
			t.Fatal(err)
		}
		var back Proof
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatal(err)
		}
		c, err := back.Verify(k.Roots())
		if err != nil || c.Size != 100 {
			t.Fatalf("verify inclusion of %d: %+v, %v", seq, c, err)
		}
		back.Record.SPIFFEID = "spiffe://example.org/evil"
		if _, err := back.Verify(k.Roots()); err == nil {
			t.Fatal("an edited record verified")
		}
	}
	if _, err := p.Inclusion(ctx, 101); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("record after the newest tree checkpoint: %v", err)
	}
	cons, err := p.Consistency(ctx, 40, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cons.Verify(k.Roots()); err != nil {
		t.Fatal(err)
	}
	if _, err := cons.Verify(storagetest.NewAuditKey(t).Roots()); !errors.Is(err, ErrSignature) {
		t.Fatalf("against another bundle: %v", err)
	}
}

// TestSplitView: a log that shows two different trees (a fork after the
// first 40 records, both signed by the same audit key) is caught by a
// consistency check between checkpoints of the two views.
func TestSplitView(t *testing.T) {
	ctx := context.Background()
	k := storagetest.NewAuditKey(t)
	a := signedStore(t, k, "view", 100, 40, 100)
	// View B: the same first 40 records, then others.
	b := signedStore(t, k, "view", 40, 40)
	fork := storagetest.Chain("fork", 41, 60, storagetest.Chain("view", 1, 40, record.Genesis)[39].Hash)
	storagetest.Append(t, b, fork, 30)
	if err := b.AppendCheckpoints(ctx, []record.Checkpoint{k.CheckpointAfter(t, fork[59], 40)}); err != nil {
		t.Fatal(err)
	}
	cfg := SignerConfig{Store: b, Leader: func() bool { return true }, Signer: k.Signer, CertDER: func() []byte { return k.Cert.Raw },
		Roots: func() []*x509.Certificate { return k.Roots() }, Origin: Origin("example.org"), Clock: time.Now}
	if err := SignRound(ctx, cfg, &Tree{}); err != nil {
		t.Fatal(err)
	}
	pa, err := Prover{Store: a}.Consistency(ctx, 40, 100)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := Prover{Store: b}.Consistency(ctx, 40, 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pa.Verify(k.Roots()); err != nil {
		t.Fatal(err)
	}
	if _, err := pb.Verify(k.Roots()); err != nil {
		t.Fatal(err)
	}
	// Two signed trees of size 100 with different roots: a split view.
	ca, _ := ParseCheckpoint(NoteText([]byte(pa.Checkpoint)))
	cb, _ := ParseCheckpoint(NoteText([]byte(pb.Checkpoint)))
	if ca.Size != cb.Size || ca.Root == cb.Root {
		t.Fatalf("views: %+v %+v", ca, cb)
	}
	// A party that saw A's head and is shown B's head (same size) cannot
	// be given a consistency proof between them.
	mixed := *pb
	mixed.OldCheckpoint, mixed.OldAuditCert = pa.Checkpoint, pa.AuditCert
	if _, err := mixed.Verify(k.Roots()); err == nil {
		t.Fatal("a proof from view A's size-100 tree to view B's verified")
	}
}
