package witness

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/internal/tlog"
	"github.com/tier0-ca/tier0/storage/sqlite"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

// logStore is a SQLite store holding recs with chain and tree checkpoints
// at each of sizes, signed by k.
func logStore(t *testing.T, k *storagetest.AuditKey, recs []*record.Record, sizes ...int) *sqlite.Store {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.New(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "r.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	storagetest.Append(t, s, recs, 50)
	cfg := tlog.SignerConfig{Store: s, Leader: func() bool { return true }, Signer: k.Signer, CertDER: func() []byte { return k.Cert.Raw },
		Roots: func() []*x509.Certificate { return k.Roots() }, Origin: tlog.Origin("example.org"), Clock: time.Now}
	tree := &tlog.Tree{}
	prev := uint64(0)
	for _, n := range sizes {
		if err := s.AppendCheckpoints(ctx, []record.Checkpoint{k.CheckpointAfter(t, recs[n-1], prev)}); err != nil {
			t.Fatal(err)
		}
		prev = uint64(n)
		if err := tlog.SignRound(ctx, cfg, tree); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// TestWitnessSplitView: the witness cosigns a growing log, and refuses a
// second tree of the same size (a fork shown to another party), a tree
// that does not extend the cosigned one, and a rollback.
func TestWitnessSplitView(t *testing.T) {
	ctx := context.Background()
	k := storagetest.NewAuditKey(t)
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	w, err := New(Config{Name: "witness.example", Key: key, LogCert: k.Cert.Raw, Roots: k.Roots(), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	real := storagetest.Chain("log", 1, 100, record.Genesis)
	early := logStore(t, k, real[:40], 40)
	if _, err := w.Step(ctx, StoreSource{tlog.Prover{Store: early}}); err != nil {
		t.Fatal(err)
	}
	grown := logStore(t, k, real, 40, 100)
	note, err := w.Step(ctx, StoreSource{tlog.Prover{Store: grown}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := Cosigned(note, "witness.example", pub); !ok {
		t.Fatalf("no valid cosignature on\n%s", note)
	}
	if _, err := tlog.Open(note, k.Cert.Raw, k.Roots()); err != nil {
		t.Fatalf("the log's own signature on the cosigned note: %v", err)
	}
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	if _, ok := Cosigned(note, "witness.example", other); ok {
		t.Fatal("cosignature verified with another key")
	}
	// A split view: the same first 40 records, then a different history of
	// the same size, signed by the same audit key.
	forked := append(append([]*record.Record{}, real[:40]...), storagetest.Chain("fork", 41, 60, real[39].Hash)...)
	split := logStore(t, k, forked, 40, 100)
	if _, err := w.Step(ctx, StoreSource{tlog.Prover{Store: split}}); !errors.Is(err, ErrSplitView) {
		t.Fatalf("split view at size 100: %v", err)
	} else {
		t.Logf("caught: %v", err)
	}
	// A fork that is longer: no consistency proof from the cosigned tree.
	longer := append(forked, storagetest.Chain("fork", 101, 20, forked[99].Hash)...)
	if _, err := w.Step(ctx, StoreSource{tlog.Prover{Store: logStore(t, k, longer, 40, 100, 120)}}); !errors.Is(err, ErrSplitView) {
		t.Fatalf("fork at size 120: %v", err)
	} else {
		t.Logf("caught: %v", err)
	}
	if _, err := w.Step(ctx, StoreSource{tlog.Prover{Store: early}}); !errors.Is(err, ErrSplitView) {
		t.Fatalf("rollback to size 40: %v", err)
	}
	// The honest log still extends.
	if _, err := w.Step(ctx, StoreSource{tlog.Prover{Store: logStore(t, k, append(real, storagetest.Chain("log", 101, 10, real[99].Hash)...), 40, 100, 110)}}); err != nil {
		t.Fatalf("honest extension after refusals: %v", err)
	}
}
