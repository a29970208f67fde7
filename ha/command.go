package ha

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
)

// A raft log entry is one command: 1 type byte followed by a JSON payload
// (see DESIGN.md). If the type has ignorableFlag set, a node that does not
// know the type skips it (rolling upgrades); otherwise an unknown type is an
// error response.
//
// Never change the meaning of an existing type or add a semantics-bearing
// field to its payload: old nodes would apply it differently. Add a new type.
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
	// it; this way such a node refuses the command (not ignorable: skipping
	// a create would fork the entry set) and must be upgraded. CreateEntry
	// uses it only when FederatesWith is set, so a cluster in a rolling
	// upgrade keeps working until someone uses the new field.
	cmdCreateEntryFederated byte = 0x08

	ignorableFlag byte = 0x80
)

// recordsCmd is a group-commit batch. Now is the leader's clock; the FSM
// assigns Seq, CommittedAt and the chain.
type recordsCmd struct {
	Now  time.Time         `json:"now"`
	Recs []json.RawMessage `json:"recs"` // each a wireRecord
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
}

func toWire(r *record.Record) wireRecord {
	return wireRecord{
		Serial: r.Serial, SPIFFEID: r.SPIFFEID, AgentID: r.AgentID,
		NotBefore: record.Truncate(r.NotBefore), NotAfter: record.Truncate(r.NotAfter),
		IssuerKeyID: r.IssuerKeyID, PublicKeySHA256: r.PublicKeySHA256,
		NodeID: r.NodeID, CertDER: r.CertDER,
	}
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

type createEntryCmd struct {
	Entry Entry `json:"entry"`
}

type deleteEntryCmd struct {
	ID string `json:"id"`
}

type createTokenCmd struct {
	Hash      string    `json:"hash"`
	Agent     string    `json:"agent"`
	ExpiresAt time.Time `json:"expires_at"`
	Now       time.Time `json:"now"`
}

type consumeTokenCmd struct {
	Hash string    `json:"hash"`
	Now  time.Time `json:"now"`
}

type setBundleCmd struct {
	TrustDomain string   `json:"trust_domain"`
	Roots       [][]byte `json:"roots"`
}

// encodeCommand returns typ followed by the JSON encoding of v.
func encodeCommand(typ byte, v any) ([]byte, error) {
	p, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("ha: encode command 0x%02x: %w", typ, err)
	}
	return append([]byte{typ}, p...), nil
}

// encodeRecords builds a cmdRecords entry from pre-marshalled wireRecords
// without re-encoding them (callers marshal in parallel, the committer only
// concatenates).
func encodeRecords(now time.Time, recs []json.RawMessage) ([]byte, error) {
	ts, err := json.Marshal(now)
	if err != nil {
		return nil, fmt.Errorf("ha: encode records: %w", err)
	}
	n := 32 + len(ts)
	for _, r := range recs {
		n += len(r) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, cmdRecords)
	b = append(b, `{"now":`...)
	b = append(b, ts...)
	b = append(b, `,"recs":[`...)
	for i, r := range recs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r...)
	}
	b = append(b, "]}"...)
	return b, nil
}
