package tlog

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
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
