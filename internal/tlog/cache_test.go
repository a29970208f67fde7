package tlog

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage/sqlite"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

// counting counts the records a prover reads.
type counting struct {
	*sqlite.Store
	read int
}

func (c *counting) Range(ctx context.Context, from, to uint64, fn func(*record.Record) error) error {
	return c.Store.Range(ctx, from, to, func(r *record.Record) error { c.read++; return fn(r) })
}

// TestTreeCache: with a cache, a proof reads only the records appended
// since the previous one, and a cached tree the store disagrees with is
// dropped and rebuilt.
func TestTreeCache(t *testing.T) {
	ctx := context.Background()
	k := storagetest.NewAuditKey(t)
	s := &counting{Store: signedStore(t, k, "cache", 100, 40)}
	var cache TreeCache
	p := Prover{Store: s, Cache: &cache}
	proveOK := func(seq uint64, wantRead int) {
		t.Helper()
		s.read = 0
		pr, err := p.Inclusion(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pr.Verify(k.Roots()); err != nil {
			t.Fatal(err)
		}
		if s.read != wantRead {
			t.Fatalf("inclusion of %d read %d records, want %d", seq, s.read, wantRead)
		}
	}
	proveOK(7, 40+1) // the tree of 40, and record 7
	proveOK(30, 0+1) // cached
	// The leader signs a tree of 100: only records 41..100 are read.
	cfg := SignerConfig{Store: s.Store, Leader: func() bool { return true }, Signer: k.Signer, CertDER: func() []byte { return k.Cert.Raw },
		Roots: func() []*x509.Certificate { return k.Roots() }, Origin: Origin("example.org"), Clock: time.Now}
	recs := storagetest.Chain("cache", 1, 100, record.Genesis)
	if err := s.AppendCheckpoints(ctx, []record.Checkpoint{k.CheckpointAfter(t, recs[99], 40)}); err != nil {
		t.Fatal(err)
	}
	if err := SignRound(ctx, cfg, &Tree{}); err != nil {
		t.Fatal(err)
	}
	proveOK(90, 60+1)
	s.read = 0
	cons, err := p.Consistency(ctx, 40, 100)
	if err != nil || s.read != 0 {
		t.Fatalf("consistency: %v, read %d", err, s.read)
	}
	if _, err := cons.Verify(k.Roots()); err != nil {
		t.Fatal(err)
	}

	// The same cache over another view of the log (same first 40
	// records, then a fork, signed at 100): refused once, then rebuilt.
	b := signedStore(t, k, "cache", 40, 40)
	fork := storagetest.Chain("fork", 41, 60, recs[39].Hash)
	storagetest.Append(t, b, fork, 30)
	if err := b.AppendCheckpoints(ctx, []record.Checkpoint{k.CheckpointAfter(t, fork[59], 40)}); err != nil {
		t.Fatal(err)
	}
	cfg.Store = b
	if err := SignRound(ctx, cfg, &Tree{}); err != nil {
		t.Fatal(err)
	}
	pb := Prover{Store: b, Cache: &cache}
	if _, err := pb.Inclusion(ctx, 90); !errors.Is(err, ErrTree) {
		t.Fatalf("cached tree of another view: %v", err)
	}
	pr, err := pb.Inclusion(ctx, 90)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pr.Verify(k.Roots()); err != nil || pr.Record.Hash == nil || string(pr.Record.Hash) != string(fork[49].Hash) {
		t.Fatalf("rebuilt: %v", err)
	}
}
