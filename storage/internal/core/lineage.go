package core

import (
	"fmt"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
)

// LastSeqSQL is the store's last seq: the highest stored record, else the
// base of the lineage that claimed the store (a store of a lineage restored
// without its old store starts after that seq), else 0.
const LastSeqSQL = `SELECT coalesce((SELECT max(seq) FROM issuance_records),
	(SELECT base_seq FROM store_lineage WHERE id = 1), 0)`

// LineageColumns are the store_lineage columns read into a record.Lineage.
const LineageColumns = "cluster_id, lineage, base_seq, base_hash, parent, created_at"

// CheckClaim validates a lineage claim.
func CheckClaim(prefix string, l record.Lineage, by string, at time.Time) error {
	if err := l.Validate(); err != nil {
		return fmt.Errorf("%s: claim lineage: %w", prefix, err)
	}
	if by == "" || at.IsZero() || l.CreatedAt.IsZero() {
		return fmt.Errorf("%s: claim lineage: claiming node, claim time and creation time are required: %w", prefix, record.ErrLineage)
	}
	if l.BaseSeq > 1<<63-1 {
		return fmt.Errorf("%s: claim lineage: base seq %d out of range: %w", prefix, l.BaseSeq, record.ErrLineage)
	}
	return nil
}
