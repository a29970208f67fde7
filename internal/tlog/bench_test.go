package tlog

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

var (
	bigOnce sync.Once
	bigTree Tree
)

// tenMillion builds (once) a synthetic tree of 10M leaves: 640 MB of
// stored hashes.
func tenMillion(b *testing.B) *Tree {
	b.Helper()
	bigOnce.Do(func() {
		bigTree.hashes = make([]Hash, 0, 2*10_000_000+64)
		var x [8]byte
		for i := range 10_000_000 {
			binary.BigEndian.PutUint64(x[:], uint64(i))
			if err := bigTree.AppendLeaf(Hash(sha256.Sum256(x[:]))); err != nil {
				b.Fatal(err)
			}
		}
	})
	return &bigTree
}

// BenchmarkInclusionProof10M: prove and check one leaf of a 10M-leaf tree
// (the hashes in memory, as the tree signer and `audit prove` hold them).
func BenchmarkInclusionProof10M(b *testing.B) {
	t := tenMillion(b)
	n := t.Size()
	root, err := t.Root(n)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		idx := int64(i*7919) % n
		p, err := t.ProveInclusion(idx, n)
		if err != nil {
			b.Fatal(err)
		}
		if err := CheckInclusion(p, n, root, idx, t.hashes[tlog.StoredHashIndex(0, idx)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConsistencyProof10M: prove and check consistency 5M -> 10M.
func BenchmarkConsistencyProof10M(b *testing.B) {
	t := tenMillion(b)
	n := t.Size()
	root, _ := t.Root(n)
	old, _ := t.Root(n / 2)
	b.ResetTimer()
	for b.Loop() {
		p, err := t.ProveConsistency(n/2, n)
		if err != nil {
			b.Fatal(err)
		}
		if err := CheckConsistency(p, n, root, n/2, old); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTreeAppend: the tree signer's cost per record (leaf hash of a
// record's canonical encoding excluded: one SHA-256).
func BenchmarkTreeAppend(b *testing.B) {
	var t Tree
	var x [8]byte
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint64(x[:], uint64(i))
		if err := t.AppendLeaf(Hash(sha256.Sum256(x[:]))); err != nil {
			b.Fatal(err)
		}
	}
}

// memStore is an in-memory record store with tree checkpoints (what
// Prover reads), for the prover benchmark.
type memStore struct {
	recs []*record.Record
	tcs  []storage.TreeCheckpoint
}

func (m *memStore) Range(ctx context.Context, from, to uint64, fn func(*record.Record) error) error {
	for s := max(from, 1); s <= min(to, uint64(len(m.recs))); s++ {
		if err := fn(m.recs[s-1]); err != nil {
			return err
		}
	}
	return ctx.Err()
}
func (m *memStore) AppendTreeCheckpoint(_ context.Context, c storage.TreeCheckpoint) error {
	m.tcs = append(m.tcs, c)
	return nil
}
func (m *memStore) TreeCheckpoints(context.Context) ([]storage.TreeCheckpoint, error) {
	return m.tcs, nil
}

// BenchmarkProveFromStore: `tier0 audit prove --serial` / the AuditLog
// service's inclusion proof end to end (prove, then check it as
// verify-proof does), from a store of 200,000 records (in memory, so
// without the database's read cost) with a signed tree checkpoint.
// "rebuild": no cache (the CLI, one process a proof): the tree is built
// from every record first, so the cost grows with the log (µs/record).
// "cached": a TreeCache (the AuditLog service) already holds the tree:
// O(log n).
func BenchmarkProveFromStore(b *testing.B) {
	const n = 200_000
	k := storagetest.NewAuditKey(b)
	s := &memStore{recs: storagetest.Chain("prove", 1, n, record.Genesis)}
	var t Tree
	for _, r := range s.recs {
		if err := t.Append(r); err != nil {
			b.Fatal(err)
		}
	}
	root, _ := t.Root(n)
	note, err := Sign(Checkpoint{Origin: Origin("example.org"), Size: n, Root: root}, k.Signer, k.Cert.Raw)
	if err != nil {
		b.Fatal(err)
	}
	s.tcs = []storage.TreeCheckpoint{{Size: n, Note: note, CertDER: k.Cert.Raw}}
	ctx := context.Background()
	for _, cached := range []bool{false, true} {
		b.Run(map[bool]string{false: "rebuild", true: "cached"}[cached], func(b *testing.B) {
			p := Prover{Store: s}
			if cached {
				p.Cache = &TreeCache{t: t}
			}
			for i := 0; b.Loop(); i++ {
				pr, err := p.Inclusion(ctx, uint64(i*7919%n+1))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := pr.Verify(k.Roots()); err != nil {
					b.Fatal(err)
				}
			}
			if !cached {
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/n, "µs/record")
			}
		})
	}
}
