package tlog

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
)

// Proof kinds.
const (
	KindInclusion   = "inclusion"
	KindConsistency = "consistency"
)

// Proof is the file `tier0 audit prove` writes and `tier0 audit
// verify-proof` checks (JSON; byte fields base64). Inclusion: Record is
// leaf Index of the tree of Checkpoint. Consistency: the tree of
// OldCheckpoint is a prefix of the tree of Checkpoint. Each checkpoint is
// a signed note, verified with its audit key certificate and the bundle.
type Proof struct {
	Kind          string         `json:"kind"`
	Checkpoint    string         `json:"checkpoint"`
	AuditCert     []byte         `json:"audit_cert"`
	OldCheckpoint string         `json:"old_checkpoint,omitempty"`
	OldAuditCert  []byte         `json:"old_audit_cert,omitempty"`
	Index         int64          `json:"index,omitempty"`
	Record        *record.Record `json:"record,omitempty"`
	Hashes        []Hash         `json:"proof"`
}

// ErrNoCheckpoint: no signed tree checkpoint covers what was asked.
var ErrNoCheckpoint = errors.New("tlog: no tree checkpoint covers it")

// Prover builds proofs from a record store.
type Prover struct {
	Store interface {
		Ranger
		storage.TreeStore
	}
	// Cache, when set, keeps the tree between proofs (a long-running
	// prover); without it every proof reads every record up to the tree
	// checkpoint.
	Cache *TreeCache
}

func (p Prover) checkpoints(ctx context.Context) ([]storage.TreeCheckpoint, error) {
	tcs, err := p.Store.TreeCheckpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("tlog: prove: %w", err)
	}
	if len(tcs) == 0 {
		return nil, fmt.Errorf("%w: the store holds no tree checkpoint yet (the leader signs one every checkpoint interval)", ErrNoCheckpoint)
	}
	return tcs, nil
}

// withTree calls fn with the tree of the store's records (at least
// 1..tc.Size), checked against tc's signed root: p.Cache's, or one built
// for this call.
func (p Prover) withTree(ctx context.Context, tc storage.TreeCheckpoint, fn func(*Tree) error) error {
	c := p.Cache
	if c == nil {
		c = &TreeCache{}
	}
	return c.with(ctx, p.Store, tc, fn)
}

// Inclusion proves the record seq against the newest tree checkpoint.
func (p Prover) Inclusion(ctx context.Context, seq uint64) (*Proof, error) {
	tcs, err := p.checkpoints(ctx)
	if err != nil {
		return nil, err
	}
	tc := tcs[len(tcs)-1]
	if seq == 0 || int64(seq) > tc.Size {
		return nil, fmt.Errorf("%w: record %d is newer than the newest tree checkpoint (size %d): try again after the next one", ErrNoCheckpoint, seq, tc.Size)
	}
	var hs []Hash
	if err := p.withTree(ctx, tc, func(t *Tree) (err error) {
		hs, err = t.ProveInclusion(int64(seq-1), tc.Size)
		return err
	}); err != nil {
		return nil, err
	}
	var rec *record.Record
	if err := p.Store.Range(ctx, seq, seq, func(r *record.Record) error { rec = r; return nil }); err != nil {
		return nil, fmt.Errorf("tlog: prove: %w", err)
	}
	return &Proof{Kind: KindInclusion, Checkpoint: string(tc.Note), AuditCert: tc.CertDER, Index: int64(seq - 1), Record: rec, Hashes: hs}, nil
}

// Consistency proves that the tree checkpoint of size from is a prefix of
// the one of size to (0: the newest).
func (p Prover) Consistency(ctx context.Context, from, to int64) (*Proof, error) {
	tcs, err := p.checkpoints(ctx)
	if err != nil {
		return nil, err
	}
	find := func(n int64) (storage.TreeCheckpoint, bool) {
		for _, c := range tcs {
			if c.Size == n {
				return c, true
			}
		}
		return storage.TreeCheckpoint{}, false
	}
	if to == 0 {
		to = tcs[len(tcs)-1].Size
	}
	old, ok1 := find(from)
	cur, ok2 := find(to)
	if !ok1 || !ok2 || from > to {
		return nil, fmt.Errorf("%w: want two stored tree checkpoint sizes, from <= to (got %d, %d)", ErrNoCheckpoint, from, to)
	}
	var hs []Hash
	if err := p.withTree(ctx, cur, func(t *Tree) (err error) {
		hs, err = t.ProveConsistency(from, to)
		return err
	}); err != nil {
		return nil, err
	}
	return &Proof{Kind: KindConsistency, Checkpoint: string(cur.Note), AuditCert: cur.CertDER,
		OldCheckpoint: string(old.Note), OldAuditCert: old.CertDER, Hashes: hs}, nil
}

// NoteText returns the text of a signed note (up to the blank line).
func NoteText(msg []byte) string {
	if i := bytes.Index(msg, []byte("\n\n")); i >= 0 {
		return string(msg[:i+1])
	}
	return string(msg)
}

// Verify checks p with only the trust bundle: the checkpoint signatures
// (audit key certificates chained to roots) and the proof. It returns the
// checkpoint proved against.
func (p *Proof) Verify(roots []*x509.Certificate) (Checkpoint, error) {
	c, err := Open([]byte(p.Checkpoint), p.AuditCert, roots)
	if err != nil {
		return Checkpoint{}, err
	}
	switch p.Kind {
	case KindInclusion:
		if p.Record == nil {
			return c, fmt.Errorf("tlog: proof: no record")
		}
		if p.Index != int64(p.Record.Seq)-1 {
			return c, fmt.Errorf("tlog: proof: index %d is not record %d's leaf", p.Index, p.Record.Seq)
		}
		return c, CheckInclusion(p.Hashes, c.Size, c.Root, p.Index, LeafHash(p.Record))
	case KindConsistency:
		old, err := Open([]byte(p.OldCheckpoint), p.OldAuditCert, roots)
		if err != nil {
			return c, fmt.Errorf("old checkpoint: %w", err)
		}
		if old.Origin != c.Origin {
			return c, fmt.Errorf("tlog: proof: checkpoints of two logs (%q, %q)", old.Origin, c.Origin)
		}
		return c, CheckConsistency(p.Hashes, c.Size, c.Root, old.Size, old.Root)
	}
	return c, fmt.Errorf("tlog: proof: unknown kind %q", p.Kind)
}
