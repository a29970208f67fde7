// Package auditexport writes and verifies the self-contained verifiable
// export of a record store (docs/AUDIT.md "Verifiable export"): every
// record in log order with its leaf hash and certificate, the signed chain
// checkpoints, the signed tree checkpoints with their audit key
// certificates, the decision chain with its signed decision checkpoints,
// and the trust bundle. An auditor verifies it with no database and no
// server: Verify loads it into memory and runs the same checks as `tier0
// audit verify` (storage.VerifyAuditWith, decisions included) plus the
// tree checkpoints.
package auditexport

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/internal/tlog"
	"github.com/tier0-ca/tier0/storage"
)

// Format is the first line's format name.
const Format = "tier0-audit-export/1"

// Header is the first line.
type Header struct {
	Format     string          `json:"format"`
	ExportedAt time.Time       `json:"exported_at"`
	Bundle     [][]byte        `json:"bundle"`            // DER roots, as given to the exporter
	Lineage    *record.Lineage `json:"lineage,omitempty"` // the store's, when claimed
}

// Record is one record line: every field of the record, its chain hashes
// and its Merkle leaf hash.
type Record struct {
	Seq             uint64    `json:"seq"`
	Serial          string    `json:"serial"`
	SPIFFEID        string    `json:"spiffe_id"`
	AgentID         string    `json:"agent_id"`
	NotBefore       time.Time `json:"not_before"`
	NotAfter        time.Time `json:"not_after"`
	IssuerKeyID     string    `json:"issuer_key_id"`
	PublicKeySHA256 string    `json:"public_key_sha256"`
	NodeID          string    `json:"node_id"`
	CommittedAt     time.Time `json:"committed_at"`
	CertDER         []byte    `json:"cert_der"`
	PrevHash        []byte    `json:"prev_hash"`
	Hash            []byte    `json:"hash"`
	LeafHash        tlog.Hash `json:"leaf_hash"`
	// An admin event record's action and content (ca/record/event.go);
	// absent for certificates.
	EventAction string `json:"event_action,omitempty"`
	EventDetail []byte `json:"event_detail,omitempty"`
}

// Line is one line after the header: exactly one field set.
type Line struct {
	Record         *Record                 `json:"record,omitempty"`
	Checkpoint     *record.Checkpoint      `json:"checkpoint,omitempty"`
	TreeCheckpoint *storage.TreeCheckpoint `json:"tree_checkpoint,omitempty"`
	// The decision chain (decisions.go), after the tree checkpoints.
	Decision           *Decision                  `json:"decision,omitempty"`
	DecisionCheckpoint *record.DecisionCheckpoint `json:"decision_checkpoint,omitempty"`
}

// Source is what Write reads.
type Source interface {
	storage.AuditReader
	storage.TreeStore
}

// Write writes the export of every record in s, in log order, then its
// checkpoints and tree checkpoints; bundle is embedded for reference (the
// verifier uses its own).
func Write(ctx context.Context, w io.Writer, s Source, bundle []*x509.Certificate, now time.Time) (records int, err error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	enc := json.NewEncoder(bw)
	h := Header{Format: Format, ExportedAt: now.UTC()}
	for _, c := range bundle {
		h.Bundle = append(h.Bundle, c.Raw)
	}
	if l, ok, err := s.Lineage(ctx); err != nil {
		return 0, fmt.Errorf("auditexport: %w", err)
	} else if ok {
		h.Lineage = &l
	}
	if err := enc.Encode(h); err != nil {
		return 0, err
	}
	err = s.Range(ctx, 1, 0, func(r *record.Record) error {
		records++
		return enc.Encode(Line{Record: &Record{Seq: r.Seq, Serial: r.Serial, SPIFFEID: r.SPIFFEID, AgentID: r.AgentID,
			NotBefore: r.NotBefore, NotAfter: r.NotAfter, IssuerKeyID: r.IssuerKeyID, PublicKeySHA256: r.PublicKeySHA256,
			NodeID: r.NodeID, CommittedAt: r.CommittedAt, CertDER: r.CertDER, PrevHash: r.PrevHash, Hash: r.Hash,
			LeafHash: tlog.LeafHash(r), EventAction: r.Action, EventDetail: r.Detail}})
	})
	if err != nil {
		return records, fmt.Errorf("auditexport: records: %w", err)
	}
	cps, err := s.Checkpoints(ctx, 1, 0)
	if err != nil {
		return records, fmt.Errorf("auditexport: checkpoints: %w", err)
	}
	for i := range cps {
		if err := enc.Encode(Line{Checkpoint: &cps[i]}); err != nil {
			return records, err
		}
	}
	tcs, err := s.TreeCheckpoints(ctx)
	if err != nil {
		return records, fmt.Errorf("auditexport: tree checkpoints: %w", err)
	}
	for i := range tcs {
		if err := enc.Encode(Line{TreeCheckpoint: &tcs[i]}); err != nil {
			return records, err
		}
	}
	if _, err := writeDecisions(ctx, enc, s); err != nil {
		return records, err
	}
	return records, bw.Flush()
}

// Export is a loaded export: an in-memory storage.AuditReader.
type Export struct {
	Header Header
	recs   []*record.Record
	leaves []tlog.Hash
	cps    []record.Checkpoint
	trees  []storage.TreeCheckpoint
	decs   []storage.Decision
	dcps   []record.DecisionCheckpoint
}

// ErrFormat is wrapped by Read errors.
var ErrFormat = errors.New("auditexport: not a verifiable export")

// Read loads an export.
func Read(r io.Reader) (*Export, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<20))
	var e Export
	if err := dec.Decode(&e.Header); err != nil || e.Header.Format != Format {
		return nil, fmt.Errorf("%w: first line: want format %q (%v)", ErrFormat, Format, err)
	}
	for n := 2; ; n++ {
		var l Line
		if err := dec.Decode(&l); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrFormat, n, err)
		}
		switch {
		case l.Record != nil:
			x := l.Record
			e.recs = append(e.recs, &record.Record{Seq: x.Seq, Serial: x.Serial, SPIFFEID: x.SPIFFEID, AgentID: x.AgentID,
				NotBefore: x.NotBefore, NotAfter: x.NotAfter, IssuerKeyID: x.IssuerKeyID, PublicKeySHA256: x.PublicKeySHA256,
				NodeID: x.NodeID, CommittedAt: x.CommittedAt, CertDER: x.CertDER, PrevHash: x.PrevHash, Hash: x.Hash,
				Action: x.EventAction, Detail: x.EventDetail})
			e.leaves = append(e.leaves, x.LeafHash)
		case l.Checkpoint != nil:
			e.cps = append(e.cps, *l.Checkpoint)
		case l.TreeCheckpoint != nil:
			e.trees = append(e.trees, *l.TreeCheckpoint)
		case l.Decision != nil:
			e.addDecision(l.Decision)
		case l.DecisionCheckpoint != nil:
			e.dcps = append(e.dcps, *l.DecisionCheckpoint)
		default:
			return nil, fmt.Errorf("%w: line %d: no record, checkpoint, tree_checkpoint, decision or decision_checkpoint", ErrFormat, n)
		}
	}
	return &e, nil
}

// Range implements storage.Ranger (records in file order; Verify reports
// any that are out of order).
func (e *Export) Range(ctx context.Context, from, to uint64, fn func(*record.Record) error) error {
	for _, r := range e.recs {
		if r.Seq < from || (to != 0 && r.Seq > to) {
			continue
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// LastSeq implements storage.AuditReader.
func (e *Export) LastSeq(context.Context) (uint64, error) {
	var m uint64
	for _, r := range e.recs {
		m = max(m, r.Seq)
	}
	return m, nil
}

// FirstSeq implements storage.AuditReader.
func (e *Export) FirstSeq(context.Context) (uint64, error) {
	if len(e.recs) == 0 {
		return 0, nil
	}
	m := e.recs[0].Seq
	for _, r := range e.recs {
		m = min(m, r.Seq)
	}
	return m, nil
}

// Checkpoints implements storage.AuditReader.
func (e *Export) Checkpoints(_ context.Context, from, to uint64) ([]record.Checkpoint, error) {
	var out []record.Checkpoint
	for _, c := range e.cps {
		if c.Seq >= from && (to == 0 || c.Seq <= to) {
			out = append(out, c)
		}
	}
	return out, nil
}

// Lineage implements storage.AuditReader.
func (e *Export) Lineage(context.Context) (record.Lineage, bool, error) {
	if e.Header.Lineage == nil {
		return record.Lineage{}, false, nil
	}
	return *e.Header.Lineage, true, nil
}
