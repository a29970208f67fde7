package record

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Decision is the hashed content of one authorization decision in the
// decision chain (docs/AUDIT.md "Authorization decisions"): decisions are
// written by every node straight to the record store, which numbers them
// 1, 2, 3, ... (Seq) and links each to the one before, Hash =
// SHA-256(PrevHash ‖ DecisionCanonical). Signed decision checkpoints pin
// the chain's head, so a deleted, edited or reordered decision is seen.
type Decision struct {
	Seq       uint64
	At        time.Time // microseconds, UTC
	NodeID    string
	Caller    string
	Requested string
	Allowed   bool
	Code      string
	Reason    string
}

// decisionVersion is the first byte of DecisionCanonical.
const decisionVersion = 0x03

// Canonical is the hashed encoding: byte 0x03 (format version; records
// use 0x01 and 0x02), then seq (uint64 big-endian), at (unix microseconds,
// uint64 big-endian), node_id, caller, requested (each a uint32
// big-endian length and the UTF-8 bytes), allowed (one byte, 1 or 0), code
// and reason (length-prefixed).
func (d *Decision) Canonical() []byte {
	var b bytes.Buffer
	b.WriteByte(decisionVersion)
	putU64(&b, d.Seq)
	putU64(&b, uint64(Truncate(d.At).UnixMicro()))
	putStr(&b, d.NodeID)
	putStr(&b, d.Caller)
	putStr(&b, d.Requested)
	if d.Allowed {
		b.WriteByte(1)
	} else {
		b.WriteByte(0)
	}
	putStr(&b, d.Code)
	putStr(&b, d.Reason)
	return b.Bytes()
}

// Hash is SHA-256(prev ‖ d.Canonical()); prev is Genesis for decision 1.
func (d *Decision) Hash(prev []byte) []byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(d.Canonical())
	return h.Sum(nil)
}

// A DecisionCheckpoint is a signed statement "the decision chain's head at
// Seq is Head", made by the leader with the audit key (the same key and
// certificate as Checkpoint). Prev is the seq of the decision checkpoint
// before it (0: none), so a deleted one is seen at the next.
type DecisionCheckpoint struct {
	Seq       uint64    `json:"seq"`
	Head      []byte    `json:"head"`
	SignedAt  time.Time `json:"signed_at"`
	NodeID    string    `json:"node"`
	CertDER   []byte    `json:"cert"`
	Signature []byte    `json:"sig"`
	Prev      uint64    `json:"prev"`
}

// ErrDecisionCheckpoint is wrapped by decision checkpoint verification
// errors.
var ErrDecisionCheckpoint = errors.New("record: bad decision checkpoint")

const decisionCheckpointDomain = "tier0 decision checkpoint v1\x00"

// Message returns the signed bytes: the domain string, seq, head, the
// signing time (unix microseconds), the node ID and prev (integers uint64
// big-endian, head and node length-prefixed).
func (c *DecisionCheckpoint) Message() []byte {
	var b bytes.Buffer
	b.WriteString(decisionCheckpointDomain)
	putU64(&b, c.Seq)
	putBytes(&b, c.Head)
	putU64(&b, uint64(Truncate(c.SignedAt).UnixMicro()))
	putStr(&b, c.NodeID)
	putU64(&b, c.Prev)
	return b.Bytes()
}

// Sign signs c with s.
func (c *DecisionCheckpoint) Sign(s crypto.Signer) error {
	c.SignedAt = Truncate(c.SignedAt)
	sig, err := signMessage(s, c.Message())
	if err != nil {
		return fmt.Errorf("record: sign decision checkpoint %d: %w", c.Seq, err)
	}
	c.Signature = sig
	return nil
}

// Verify checks c's certificate against roots at SignedAt and its
// signature; the error wraps ErrDecisionCheckpoint.
func (c *DecisionCheckpoint) Verify(roots []*x509.Certificate) error {
	if len(c.Head) != HashSize {
		return fmt.Errorf("%w: seq %d: head is %d bytes, want %d", ErrDecisionCheckpoint, c.Seq, len(c.Head), HashSize)
	}
	if err := verifySigned(c.CertDER, c.SignedAt, c.Message(), c.Signature, roots); err != nil {
		return fmt.Errorf("%w: seq %d: %w", ErrDecisionCheckpoint, c.Seq, err)
	}
	return nil
}
