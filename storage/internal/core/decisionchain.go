package core

import (
	"fmt"

	"github.com/tier0-ca/tier0/ca/record"
)

// DecisionRecord is d's hashed content (ca/record.Decision).
func DecisionRecord(d Decision) record.Decision {
	return record.Decision{Seq: d.Seq, At: d.At, NodeID: d.NodeID, Caller: d.Caller, Requested: d.Requested,
		Allowed: d.Allowed, Code: d.Code, Reason: d.Reason}
}

// ChainDecisions numbers ds after the chain head (lastSeq, lastHash; 0 and
// nil for an empty chain) and links them: each gets Seq, PrevHash and
// Hash, and At truncated to microseconds (as stored).
func ChainDecisions(ds []Decision, lastSeq uint64, lastHash []byte) {
	prev := lastHash
	if lastSeq == 0 {
		prev = record.Genesis
	}
	for i := range ds {
		d := &ds[i]
		d.At = record.Truncate(d.At)
		d.Seq = lastSeq + uint64(i) + 1
		d.PrevHash = prev
		r := DecisionRecord(*d)
		d.Hash = r.Hash(prev)
		prev = d.Hash
	}
}

// DecisionChainSQL reads chained decisions with from <= chain_seq, in
// chain order, at most limit.
func DecisionChainSQL(ph func(int) string) string {
	return "SELECT id, decided_at, node_id, caller, requested, allowed, reason, code, chain_seq, prev_hash, hash FROM authz_decisions" +
		" WHERE chain_seq >= " + ph(1) + " ORDER BY chain_seq LIMIT " + ph(2)
}

// CheckDecisionCheckpoint validates a decision checkpoint before it is
// stored.
func CheckDecisionCheckpoint(backend string, c record.DecisionCheckpoint) error {
	if c.Seq == 0 || len(c.Head) != record.HashSize || len(c.CertDER) == 0 || len(c.Signature) == 0 || c.Prev >= c.Seq {
		return fmt.Errorf("%s: decision checkpoint %d: seq, head, certificate, signature or prev missing or malformed", backend, c.Seq)
	}
	return nil
}
