package journal

import (
	"context"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ca/record"
)

var _ ca.IdemJournal = (*Bounded)(nil)

// CommitKeyed is Commit with idempotency key hashes (ca/idem.go). A Node
// without an idempotency index commits the records plainly.
func (b *Bounded) CommitKeyed(ctx context.Context, recs []*record.Record, keys []uint64) error {
	ij, ok := b.cfg.Node.(ca.IdemJournal)
	if !ok {
		return b.Commit(ctx, recs)
	}
	if err := b.refuseIfFull(); err != nil {
		return err
	}
	return ij.CommitKeyed(ctx, recs, keys)
}

// Committed returns the record committed for an idempotency key hash, or
// nil (also when the Node keeps no index).
func (b *Bounded) Committed(ctx context.Context, key uint64) (*record.Record, error) {
	ij, ok := b.cfg.Node.(ca.IdemJournal)
	if !ok {
		return nil, nil
	}
	return ij.Committed(ctx, key)
}
