package ha

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
)

// A raft log entry is one command: 1 type byte followed by a JSON object
// (see DESIGN.md), which the leader ends with a digest member (integrity.go).
// If the type has ignorableFlag set, a node that does not know the type
// skips it (rolling upgrades); otherwise an unknown type latches the node
// diverged (health.go).
//
// Never change the meaning of an existing type or add a semantics-bearing
// field to its payload: old nodes would apply it differently. Add a new type.
// (The digest member and recordsCmd.Expect are checks, not semantics: a node
// that ignores them reaches the same state.)
const (
	cmdRecords      byte = 0x01 // recordsCmd: append a batch to the journal
	cmdExported     byte = 0x02 // exportedCmd: records <= Seq are in the store
	cmdCreateEntry  byte = 0x03 // createEntryCmd
	cmdDeleteEntry  byte = 0x04 // deleteEntryCmd
	cmdCreateToken  byte = 0x05 // createTokenCmd
	cmdConsumeToken byte = 0x06 // consumeTokenCmd
	cmdSetBundle    byte = 0x07 // setBundleCmd
	// cmdCreateEntryFederated is createEntryCmd whose entry may carry
	// FederatesWith. It is a new type, not a field added to cmdCreateEntry,
	// because a node that predates the field would store the entry without
	// it; this way such a node cannot apply the command (not ignorable:
	// skipping a create would fork the entry set), latches diverged
	// (health.go) and must be upgraded. CreateEntry
	// uses it only when FederatesWith is set, so a cluster in a rolling
	// upgrade keeps working until someone uses the new field.
	cmdCreateEntryFederated byte = 0x08

	ignorableFlag byte = 0x80
)

// recordsCmd is a group-commit batch. Now is the leader's clock; the FSM
// assigns Seq, CommittedAt and the chain.
type recordsCmd struct {
	Now    time.Time         `json:"now"`
	Expect *recordsExpect    `json:"expect,omitempty"` // absent in entries older than the integrity checks
	Recs   []json.RawMessage `json:"recs"`             // each a wireRecord
}

// recordsExpect is the journal position the leader computed for its batch
// (journal.go proposeRecords): seq and head before it, head after it. It
// holds only in the leader's term Term (DESIGN.md "Integrity"): a node
// whose journal is elsewhere, or that seals the batch to another head,
// cannot apply the entry.
type recordsExpect struct {
	Term uint64 `json:"term"`
	Seq  uint64 `json:"seq"`
	Prev []byte `json:"prev"`
	Head []byte `json:"head"`
}

// wireRecord is a record as proposed: everything except the fields the FSM
// assigns (Seq, CommittedAt, PrevHash, Hash).
type wireRecord struct {
	Serial          string    `json:"serial"`
	SPIFFEID        string    `json:"spiffe_id"`
	AgentID         string    `json:"agent_id,omitempty"`
	NotBefore       time.Time `json:"nbf"`
	NotAfter        time.Time `json:"naf"`
	IssuerKeyID     string    `json:"issuer_kid"`
	PublicKeySHA256 string    `json:"pub_sha256"`
	NodeID          string    `json:"node"`
	CertDER         []byte    `json:"der"`
	// Idem is the request's idempotency key hash (idem.go), 0: none. Not
	// part of the record: only the index derived from it depends on it.
	Idem uint64 `json:"idem,omitempty"`
}

func toWire(r *record.Record) wireRecord {
	return wireRecord{
		Serial: r.Serial, SPIFFEID: r.SPIFFEID, AgentID: r.AgentID,
		NotBefore: record.Truncate(r.NotBefore), NotAfter: record.Truncate(r.NotAfter),
		IssuerKeyID: r.IssuerKeyID, PublicKeySHA256: r.PublicKeySHA256,
		NodeID: r.NodeID, CertDER: r.CertDER,
	}
}

// sealBatch assigns Seq, CommittedAt (the leader's stamp now, never
// before lastCommit) and the hash chain to recs, following a journal at seq
// with head. It returns the new head and CommittedAt. The FSM and the
// leader (for recordsExpect) both use it.
func sealBatch(recs []*record.Record, seq uint64, head []byte, lastCommit, now time.Time) ([]byte, time.Time) {
	at := record.Truncate(now)
	if at.Before(lastCommit) {
		at = lastCommit // a new leader with a slower clock
	}
	for _, r := range recs {
		seq++
		r.Seq = seq
		r.CommittedAt = at
		head = r.Seal(head)
	}
	return head, at
}

func (w *wireRecord) validate() error {
	if w.Serial == "" || w.SPIFFEID == "" {
		return fmt.Errorf("ha: record: serial and spiffe id are required: %w", ErrInvalid)
	}
	return nil
}

func (w *wireRecord) record() *record.Record {
	return &record.Record{
		Serial: w.Serial, SPIFFEID: w.SPIFFEID, AgentID: w.AgentID,
		NotBefore: record.Truncate(w.NotBefore), NotAfter: record.Truncate(w.NotAfter),
		IssuerKeyID: w.IssuerKeyID, PublicKeySHA256: w.PublicKeySHA256,
		NodeID: w.NodeID, CertDER: w.CertDER,
	}
}

type exportedCmd struct {
	Seq uint64 `json:"seq"`
}

func (*exportedCmd) validate() error { return nil }

type createEntryCmd struct {
	Entry Entry `json:"entry"`
}

func (c *createEntryCmd) validate() error {
	if e := c.Entry; e.ID == "" || e.Agent == "" || e.SPIFFEID == "" || e.TTL < 0 {
		return fmt.Errorf("ha: create entry: id, agent and spiffe id are required: %w", ErrInvalid)
	}
	return nil
}

type deleteEntryCmd struct {
	ID string `json:"id"`
}

func (*deleteEntryCmd) validate() error { return nil }

type createTokenCmd struct {
	Hash      string    `json:"hash"`
	Agent     string    `json:"agent"`
	ExpiresAt time.Time `json:"expires_at"`
	Now       time.Time `json:"now"`
}

func (c *createTokenCmd) validate() error {
	if err := validTokenHash(c.Hash); err != nil {
		return err
	}
	if c.Agent == "" || !c.ExpiresAt.After(c.Now) {
		return fmt.Errorf("ha: create token: agent and a future expiry are required: %w", ErrInvalid)
	}
	return nil
}

type consumeTokenCmd struct {
	Hash string    `json:"hash"`
	Now  time.Time `json:"now"`
}

func (*consumeTokenCmd) validate() error { return nil }

type setBundleCmd struct {
	TrustDomain string   `json:"trust_domain"`
	Roots       [][]byte `json:"roots"`
}

func (c *setBundleCmd) validate() error {
	if c.TrustDomain == "" || len(c.Roots) == 0 {
		return fmt.Errorf("ha: set bundle: trust domain and at least one root are required: %w", ErrInvalid)
	}
	return nil
}

// encodeCommand returns typ followed by the JSON encoding of v, without a
// digest: the leader adds it when it proposes (Node.applyRaw).
func encodeCommand(typ byte, v any) ([]byte, error) {
	p, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("ha: encode command 0x%02x: %w", typ, err)
	}
	return append([]byte{typ}, p...), nil
}

// encodeRecords builds a cmdRecords entry, digest included, from
// pre-marshalled wireRecords without re-encoding them (callers marshal in
// parallel, the committer only concatenates). expect may be nil.
func encodeRecords(now time.Time, expect *recordsExpect, recs []json.RawMessage) ([]byte, error) {
	ts, err := json.Marshal(now)
	if err != nil {
		return nil, fmt.Errorf("ha: encode records: %w", err)
	}
	var ex []byte
	if expect != nil {
		if ex, err = json.Marshal(expect); err != nil {
			return nil, fmt.Errorf("ha: encode records: %w", err)
		}
	}
	n := 48 + len(ts) + len(ex) + sumLen
	for _, r := range recs {
		n += len(r) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, cmdRecords)
	b = append(b, `{"now":`...)
	b = append(b, ts...)
	if ex != nil {
		b = append(b, `,"expect":`...)
		b = append(b, ex...)
	}
	b = append(b, `,"recs":[`...)
	for i, r := range recs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r...)
	}
	b = append(b, "]}"...)
	sum := sha256.Sum256(b)
	return appendSum(b[:len(b)-1], sum[:]), nil
}
