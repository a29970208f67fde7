// Package tlog makes the issuance records the leaves of an RFC 6962
// Merkle tree, signs its checkpoints in the C2SP tlog-checkpoint signed-note
// format, and proves and checks inclusion and consistency
// (docs/AUDIT.md "Merkle tree and proofs"). The proof math is
// golang.org/x/mod/sumdb/tlog's; the notes are golang.org/x/mod/sumdb/note.
//
// Leaf i (0-based) is record seq i+1; its leaf hash is
// SHA-256(0x00 || record.Canonical()) and interior nodes are
// SHA-256(0x01 || left || right) (RFC 6962 section 2.1).
package tlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tier0-ca/tier0/ca/record"
)

// Hash is a tree hash.
type Hash = tlog.Hash

// LeafHash returns the RFC 6962 leaf hash of r: SHA-256(0x00 || r.Canonical()).
func LeafHash(r *record.Record) Hash { return tlog.RecordHash(r.Canonical()) }

// Tree holds every stored hash of a tree (tlog's layout: 2 hashes a leaf),
// in memory. Not safe for concurrent use.
type Tree struct {
	hashes []Hash
	size   int64
	head   []byte // chain hash of the last leaf's record
}

// ErrTree is wrapped by tree errors.
var ErrTree = errors.New("tlog: tree")

// Size returns the number of leaves.
func (t *Tree) Size() int64 { return t.size }

// Head returns the record chain hash of the last leaf.
func (t *Tree) Head() []byte { return t.head }

// ReadHashes implements tlog.HashReader.
func (t *Tree) ReadHashes(idx []int64) ([]Hash, error) {
	out := make([]Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= int64(len(t.hashes)) {
			return nil, fmt.Errorf("%w: hash %d not stored (%d)", ErrTree, x, len(t.hashes))
		}
		out[i] = t.hashes[x]
	}
	return out, nil
}

// AppendLeaf adds the leaf hash of the next leaf.
func (t *Tree) AppendLeaf(h Hash) error {
	hs, err := tlog.StoredHashesForRecordHash(t.size, h, t)
	if err != nil {
		return fmt.Errorf("%w: append leaf %d: %w", ErrTree, t.size, err)
	}
	t.hashes = append(t.hashes, hs...)
	t.size++
	return nil
}

// Append adds record r, which must be the next record (seq Size()+1) and
// link to the previous one by the hash chain.
func (t *Tree) Append(r *record.Record) error {
	if r.Seq != uint64(t.size)+1 {
		return fmt.Errorf("%w: record seq %d, want %d", ErrTree, r.Seq, t.size+1)
	}
	prev := t.head
	if t.size == 0 {
		prev = record.Genesis
	}
	if err := r.Verify(prev); err != nil {
		return fmt.Errorf("%w: %w", ErrTree, err)
	}
	if err := t.AppendLeaf(LeafHash(r)); err != nil {
		return err
	}
	t.head = r.Hash
	return nil
}

// Root returns the root hash of the first n leaves (n <= Size()).
func (t *Tree) Root(n int64) (Hash, error) {
	if n < 0 || n > t.size {
		return Hash{}, fmt.Errorf("%w: size %d of %d", ErrTree, n, t.size)
	}
	h, err := tlog.TreeHash(n, t)
	if err != nil {
		return Hash{}, fmt.Errorf("%w: %w", ErrTree, err)
	}
	return h, nil
}

// ProveInclusion returns the inclusion proof of leaf index in the tree of size n.
func (t *Tree) ProveInclusion(index, n int64) ([]Hash, error) {
	if index < 0 || index >= n || n > t.size {
		return nil, fmt.Errorf("%w: leaf %d in size %d of %d", ErrTree, index, n, t.size)
	}
	p, err := tlog.ProveRecord(n, index, t)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTree, err)
	}
	return p, nil
}

// ProveConsistency returns the consistency proof from size m to size n.
func (t *Tree) ProveConsistency(m, n int64) ([]Hash, error) {
	if m < 1 || m > n || n > t.size {
		return nil, fmt.Errorf("%w: sizes %d..%d of %d", ErrTree, m, n, t.size)
	}
	p, err := tlog.ProveTree(n, m, t)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTree, err)
	}
	return p, nil
}

// CheckInclusion checks that leaf is leaf index of the tree of size n with root.
func CheckInclusion(proof []Hash, n int64, root Hash, index int64, leaf Hash) error {
	if err := tlog.CheckRecord(proof, n, root, index, leaf); err != nil {
		return fmt.Errorf("tlog: inclusion proof of leaf %d in tree size %d: %w", index, n, err)
	}
	return nil
}

// CheckConsistency checks that the tree of size m with root oldRoot is a
// prefix of the tree of size n with root.
func CheckConsistency(proof []Hash, n int64, root Hash, m int64, oldRoot Hash) error {
	if err := tlog.CheckTree(proof, n, root, m, oldRoot); err != nil {
		return fmt.Errorf("tlog: consistency proof %d -> %d: %w", m, n, err)
	}
	return nil
}

// Ranger streams records in seq order (storage.Store.Range).
type Ranger interface {
	Range(ctx context.Context, from, to uint64, fn func(*record.Record) error) error
}

// Extend appends records Size()+1..upTo read from s, checking the hash
// chain, and, when head is not nil, that record upTo's hash is head (a
// signed chain checkpoint's).
func (t *Tree) Extend(ctx context.Context, s Ranger, upTo uint64, head []byte) error {
	if upTo > uint64(t.size) {
		if err := s.Range(ctx, uint64(t.size)+1, upTo, t.Append); err != nil {
			return fmt.Errorf("tlog: extend to %d: %w", upTo, err)
		}
	}
	if uint64(t.size) != upTo {
		return fmt.Errorf("%w: the store ends at seq %d, want %d", ErrTree, t.size, upTo)
	}
	if head != nil && !bytes.Equal(t.head, head) {
		return fmt.Errorf("%w: record %d hashes to %x, the signed checkpoint says %x", ErrTree, upTo, t.head, head)
	}
	return nil
}
