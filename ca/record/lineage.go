package record

import (
	"crypto/rand"
	"errors"
	"fmt"
	"time"
)

// ErrLineage: a Lineage is malformed.
var ErrLineage = errors.New("record: invalid lineage")

// Lineage names one hash chain of records: the cluster that writes it
// and the line of its history. The journal keeps it in its replicated
// state (and therefore in snapshots and backups); a record store is
// claimed by the first exporter that writes to it and from then on takes
// records only from a journal with the same ClusterID and ID.
//
// ClusterID is set once, at the cluster's first start, and kept by every
// restore. ID changes at a restore that does not continue the record
// store's chain (`tier0 backup restore` without --store): the restored journal
// may have lost records the store holds, so it starts a new lineage that
// continues the chain after record BaseSeq, whose hash is BaseHash.
type Lineage struct {
	ClusterID string    `json:"cluster_id"`
	ID        string    `json:"lineage"`
	BaseSeq   uint64    `json:"base_seq"`         // the lineage's first record is BaseSeq+1 (0: the chain from genesis)
	BaseHash  []byte    `json:"base_hash"`        // hash of record BaseSeq (Genesis when BaseSeq is 0)
	Parent    string    `json:"parent,omitempty"` // the lineage this one was restored from
	CreatedAt time.Time `json:"created_at"`       // when the lineage started (the proposer's clock)
}

// NewLineageID returns a random identifier for a ClusterID or a lineage
// ID (128 bits, base32).
func NewLineageID() string { return rand.Text() }

// maxLineageID bounds an identifier (a generated one is 26 characters).
const maxLineageID = 64

// Validate reports a malformed lineage as an error wrapping ErrLineage.
func (l Lineage) Validate() error {
	for _, f := range []struct{ name, v string }{{"cluster id", l.ClusterID}, {"lineage id", l.ID}, {"parent", l.Parent}} {
		if f.v == "" && f.name == "parent" {
			continue
		}
		if f.v == "" || len(f.v) > maxLineageID {
			return fmt.Errorf("%w: %s must be 1..%d characters", ErrLineage, f.name, maxLineageID)
		}
		for _, c := range f.v {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%w: %s %q: only letters, digits, '-' and '_'", ErrLineage, f.name, f.v)
			}
		}
	}
	if len(l.BaseHash) != HashSize {
		return fmt.Errorf("%w: base hash is %d bytes, want %d", ErrLineage, len(l.BaseHash), HashSize)
	}
	return nil
}

// Same reports whether l and o name the same chain (cluster and lineage).
func (l Lineage) Same(o Lineage) bool { return l.ClusterID == o.ClusterID && l.ID == o.ID }

// String names the lineage for messages: "cluster C lineage L" and, for a
// restored lineage, where it starts.
func (l Lineage) String() string {
	s := fmt.Sprintf("cluster %s lineage %s", l.ClusterID, l.ID)
	if l.Parent != "" || l.BaseSeq > 0 {
		s += fmt.Sprintf(" (restored from lineage %s after seq %d)", l.Parent, l.BaseSeq)
	}
	return s
}
