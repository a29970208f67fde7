package auditexport

import (
	"context"
	"crypto/x509"
	"fmt"

	"github.com/tier0-ca/tier0/internal/tlog"
	"github.com/tier0-ca/tier0/storage"
)

// Problems Verify reports beside storage.VerifyAuditWith's.
const (
	// ProblemLeafHash: a record line's leaf_hash is not the hash of its fields.
	ProblemLeafHash = "leaf hash mismatch"
	// ProblemForgedTreeCheckpoint: a tree checkpoint's note does not verify
	// with its audit key certificate and the bundle, or names another size.
	ProblemForgedTreeCheckpoint = "forged tree checkpoint"
	// ProblemTreeMismatch: the records' tree root differs from a signed
	// tree checkpoint's.
	ProblemTreeMismatch = "tree checkpoint mismatch"
)

// Verify checks a loaded export against roots (the auditor's bundle):
// the chain, the chain checkpoints and every certificate as `tier0 audit
// verify` does, every leaf hash, and every tree checkpoint (signature,
// and root over the exported records). TreeCheckpoints is how many tree
// checkpoints verified.
func Verify(ctx context.Context, e *Export, roots []*x509.Certificate) (res storage.AuditResult, treeCheckpoints int, err error) {
	res, err = storage.VerifyAuditWith(ctx, e, storage.AuditOptions{Roots: roots, Certs: storage.NewCertChecker(roots, nil)})
	if err != nil {
		return res, 0, err
	}
	for i, r := range e.recs {
		if tlog.LeafHash(r) != e.leaves[i] {
			res.Report(r.Seq, ProblemLeafHash, fmt.Sprintf("record %d: leaf_hash %s is not the hash of the record's fields", r.Seq, e.leaves[i]))
			break
		}
	}
	first, _ := e.FirstSeq(ctx)
	if first > 1 {
		return res, 0, nil // a pruned store: the tree needs every record from seq 1
	}
	var t tlog.Tree
	for _, tc := range e.trees {
		c, err := tlog.Open(tc.Note, tc.CertDER, roots)
		if err == nil && c.Size != tc.Size {
			err = fmt.Errorf("the note is of size %d", c.Size)
		}
		if err != nil {
			res.Report(uint64(max(tc.Size, 1)), ProblemForgedTreeCheckpoint, fmt.Sprintf("tree checkpoint %d: %v", tc.Size, err))
			continue
		}
		if tc.Size < t.Size() {
			continue
		}
		if err := t.Extend(ctx, e, uint64(tc.Size), nil); err != nil {
			break // the chain problem is reported by VerifyAuditWith
		}
		if !rootIs(&t, tc.Size, c.Root) {
			res.Report(uint64(tc.Size), ProblemTreeMismatch, fmt.Sprintf("records 1..%d hash to another root than the signed tree checkpoint of that size", tc.Size))
			continue
		}
		treeCheckpoints++
	}
	return res, treeCheckpoints, nil //nolint:nilerr // a chain break is a finding in res (VerifyAuditWith), not a failure to verify
}

// rootIs tells whether the first size leaves of t hash to want (false when
// t cannot say: it holds fewer).
func rootIs(t *tlog.Tree, size int64, want tlog.Hash) bool {
	root, err := t.Root(size)
	return err == nil && root == want
}
