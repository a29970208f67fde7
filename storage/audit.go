package storage

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage/internal/core"
)

// Audit types (see core for the fields).
type (
	Checkpoint     = record.Checkpoint
	Decision       = core.Decision
	DecisionFilter = core.DecisionFilter
	PruneResult    = core.PruneResult
)

// AuditReader is what VerifyAudit reads: the record bounds, the records,
// the checkpoints and the store's lineage (where a restored lineage's
// store starts). Every AuditStore is one.
type AuditReader interface {
	Ranger
	LastSeq(ctx context.Context) (uint64, error)
	FirstSeq(ctx context.Context) (uint64, error)
	Checkpoints(ctx context.Context, from, to uint64) ([]Checkpoint, error)
	Lineage(ctx context.Context) (l record.Lineage, ok bool, err error)
}

// AuditStore is a Store with signed checkpoints (migration 0002),
// authorization decisions (0003) and retention. Both backends implement it;
// consumers should declare the one or two methods they use.
type AuditStore interface {
	Store
	// FirstSeq returns the lowest stored seq (above 1 after Prune), 0 when empty.
	FirstSeq(ctx context.Context) (uint64, error)
	// AppendCheckpoints stores checkpoints, skipping seqs already stored.
	AppendCheckpoints(ctx context.Context, cps []Checkpoint) error
	// Checkpoints returns checkpoints with from <= seq <= to (to 0: all), in order.
	Checkpoints(ctx context.Context, from, to uint64) ([]Checkpoint, error)
	AppendDecisions(ctx context.Context, ds []Decision) error
	// QueryDecisions returns matching decisions newest first; ErrBadFilter on a malformed filter.
	QueryDecisions(ctx context.Context, f DecisionFilter) ([]Decision, error)
	// Prune removes records before the newest checkpoint committed before
	// `before` (that checkpoint and its record stay, as the chain's anchor),
	// older checkpoints and older decisions.
	Prune(ctx context.Context, before time.Time) (PruneResult, error)
	// SchemaVersion returns the database's and this binary's schema versions.
	SchemaVersion(ctx context.Context) (db, binary int, err error)
}

// OpenAudit is Open for callers that need the AuditStore methods.
func OpenAudit(ctx context.Context, dsn string) (AuditStore, error) {
	s, err := Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	a, ok := s.(AuditStore)
	if !ok {
		s.Close()
		return nil, fmt.Errorf("storage: open: %T has no audit tables", s)
	}
	return a, nil
}

// Problems reported by VerifyAudit beside those of Verify.
const (
	// ProblemForgedCheckpoint: a checkpoint's signature or certificate does
	// not verify against the bundle (its head, seq or time was edited, or it
	// was made with another key).
	ProblemForgedCheckpoint = "forged checkpoint"
	// ProblemCheckpointMismatch: the records hash consistently but the
	// chain head at a checkpoint's seq differs from the signed head: records
	// after the previous matching checkpoint were rewritten and re-hashed.
	ProblemCheckpointMismatch = "checkpoint mismatch"
	// ProblemMissingCheckpoint: a signed checkpoint names, as the one
	// before it, a checkpoint the store no longer holds (deleted).
	ProblemMissingCheckpoint = "missing checkpoint"
)

// AuditResult is the outcome of VerifyAudit.
type AuditResult struct {
	VerifyResult
	From, To       uint64 // the records checked (To: the last stored when the range was open)
	Anchor         uint64 // checkpoint the chain was verified from (0: from genesis or Base)
	Base           uint64 // the store's lineage starts after this seq (restored without its previous store): records 1..Base are in that store, not this one
	Checkpoints    int    // checkpoints whose signature and head verified
	LastCheckpoint uint64 // highest verified checkpoint seq; records after it are covered by the chain only
	Detail         string // human-readable explanation of Problem
	// Decisions is the decision chain's verification (VerifyAuditWith,
	// when the store keeps one and the records are intact).
	Decisions DecisionResult
}

// VerifyAudit verifies records from..to (0: all) and the signed checkpoints
// among them against roots (the trust bundle). The chain starts from the
// newest valid checkpoint at or before `from` (or genesis), so a pruned
// store verifies from its anchor; a store claimed by a lineage restored
// without its previous store (record.Lineage.BaseSeq > 0) verifies from its
// first record, which must link to the lineage's base hash. It reports the lowest-seq problem of:
// the chain (see Verify), a checkpoint that does not verify, a chain head
// that differs from a signed checkpoint, a checkpoint beyond the last
// stored record (records removed at the end). It errors only when reading
// fails or the range is malformed.
func VerifyAudit(ctx context.Context, s AuditReader, from, to uint64, roots []*x509.Certificate) (AuditResult, error) {
	return VerifyAuditWith(ctx, s, AuditOptions{From: from, To: to, Roots: roots})
}

// certBatch is how many records VerifyAuditWith hands the certificate
// checker at once.
const certBatch = 512

// AuditOptions configures VerifyAuditWith.
type AuditOptions struct {
	From, To uint64              // records to verify (0: from the first / to the last)
	Roots    []*x509.Certificate // the trust bundle
	// Certs, when set, also checks every record's certificate against its
	// columns and the bundle (ProblemCertMismatch, ProblemCertChain).
	Certs *CertChecker
}

// VerifyAuditWith is VerifyAudit with options (see AuditOptions). When s
// also keeps the decision chain (DecisionChainReader) and the records are
// intact, it verifies the decisions too (VerifyDecisions, in
// AuditResult.Decisions); a decision problem is then the result's Problem
// and Detail (FirstBad stays 0: it counts records).
func VerifyAuditWith(ctx context.Context, s AuditReader, o AuditOptions) (AuditResult, error) {
	res, err := verifyRecords(ctx, s, o)
	if err != nil || !res.OK() {
		return res, err
	}
	dc, ok := s.(DecisionChainReader)
	if !ok {
		return res, nil
	}
	if res.Decisions, err = VerifyDecisions(ctx, dc, o.Roots); err != nil {
		return res, err
	}
	if !res.Decisions.OK() {
		res.Problem, res.Detail = res.Decisions.Problem, res.Decisions.Detail
	}
	return res, nil
}

// verifyRecords is VerifyAuditWith for the records.
func verifyRecords(ctx context.Context, s AuditReader, o AuditOptions) (AuditResult, error) {
	from, to, roots := o.From, o.To, o.Roots
	if from == 0 {
		from = 1
	}
	if to != 0 && to < from {
		return AuditResult{}, fmt.Errorf("storage: verify: range %d..%d: %w", from, to, ErrBadFilter)
	}
	// Checkpoints first: the exporter stores a checkpoint's records before
	// it, so every checkpoint read here has its records by the time the
	// record bounds are read (the other order could see a checkpoint
	// exported in between as lying beyond the last record).
	cps, err := s.Checkpoints(ctx, 1, to)
	if err != nil {
		return AuditResult{}, fmt.Errorf("storage: verify: %w", err)
	}
	first, err := s.FirstSeq(ctx)
	if err != nil {
		return AuditResult{}, fmt.Errorf("storage: verify: %w", err)
	}
	last, err := s.LastSeq(ctx)
	if err != nil {
		return AuditResult{}, fmt.Errorf("storage: verify: %w", err)
	}
	lin, claimed, err := s.Lineage(ctx)
	if err != nil {
		return AuditResult{}, fmt.Errorf("storage: verify: %w", err)
	}
	var base uint64
	if claimed {
		base = lin.BaseSeq
	}
	res := AuditResult{From: from, To: to}
	if res.To == 0 {
		res.To = last
	}
	var bad []problem
	valid := map[uint64][]byte{}
	var anchor *Checkpoint
	lo := max(from, first)
	for i := range cps {
		c := &cps[i]
		if err := verifyCheckpoint(cps, i, roots); err != nil {
			if c.Seq >= from {
				bad = append(bad, problem{c.Seq, ProblemForgedCheckpoint, err.Error()})
			}
			continue
		}
		valid[c.Seq] = c.Head
		if c.Seq >= first && c.Seq <= lo && lo > 1 {
			anchor = c
		}
	}
	start, prev := uint64(1), record.Genesis
	switch {
	case first == 0: // no records
		for _, c := range cps {
			if _, ok := valid[c.Seq]; ok {
				bad = append(bad, problem{base + 1, ProblemMissing, fmt.Sprintf("the store is empty but checkpoint %d is signed", c.Seq)})
				break
			}
		}
		res.fail(bad)
		return res, nil
	case anchor != nil:
		start, prev, res.Anchor = anchor.Seq, nil, anchor.Seq
	case base > 0 && first == base+1:
		// A store of a restored lineage: its first record links to the
		// base hash it was claimed with.
		start, prev, res.Base = first, lin.BaseHash, base
	case first > 1:
		bad = append(bad, problem{1, ProblemMissing, fmt.Sprintf("records 1..%d are missing and no valid checkpoint anchors seq %d", first-1, first)})
		res.fail(bad)
		return res, nil
	}
	stored := map[uint64][]byte{}
	var certs *certPipeline // certificate checks, beside the reading (certpipe.go)
	var batch []*record.Record
	if o.Certs != nil {
		certs = startCertPipeline(o.Certs)
		batch = make([]*record.Record, 0, certBatch)
	}
	hook := &hookStore{Ranger: s, fn: func(r *record.Record) {
		if _, ok := valid[r.Seq]; ok {
			stored[r.Seq] = r.Hash
		}
		if certs != nil && r.Seq >= from && !certs.found.Load() {
			batch = append(batch, r)
			if len(batch) == certBatch {
				certs.submit(batch)
				batch = make([]*record.Record, 0, certBatch)
			}
		}
	}}
	vr, err := verifyFrom(ctx, hook, start, to, prev)
	var certBad *problem
	if certs != nil {
		if len(batch) > 0 && err == nil {
			certs.submit(batch)
		}
		certBad = certs.wait()
	}
	if err != nil {
		return AuditResult{}, err
	}
	res.VerifyResult = vr
	if !vr.OK() {
		bad = append(bad, problem{vr.FirstBad, vr.Problem, chainDetail(vr)})
	}
	if certBad != nil {
		bad = append(bad, *certBad)
	}
	if o.Certs != nil {
		if seq, kind, detail := o.Certs.Finish(start == 1 || (res.Base > 0 && start == res.Base+1)); kind != "" {
			bad = append(bad, problem{seq, kind, detail})
		}
	}
	bad = append(bad, brokenLinks(cps, valid, start, to)...)
	through := start + vr.Checked - 1 // last record verified by the chain
	prevGood := start - 1
	for _, c := range cps {
		head, ok := valid[c.Seq]
		if !ok || c.Seq < start || (to != 0 && c.Seq > to) {
			continue
		}
		switch {
		case c.Seq > last:
			bad = append(bad, problem{last + 1, ProblemMissing,
				fmt.Sprintf("checkpoint %d is signed but the store ends at seq %d (records removed at the end)", c.Seq, last)})
		case c.Seq > through:
			// beyond the first chain problem: already reported
		case !bytes.Equal(stored[c.Seq], head):
			bad = append(bad, problem{prevGood + 1, ProblemCheckpointMismatch,
				fmt.Sprintf("records %d..%d hash consistently but the head at seq %d differs from the signed checkpoint: rewritten", prevGood+1, c.Seq, c.Seq)})
		default:
			res.Checkpoints++
			res.LastCheckpoint = c.Seq
			prevGood = c.Seq
			continue
		}
		break
	}
	res.fail(bad)
	return res, nil
}

// verifyCheckpoint verifies cps[i]. A checkpoint stored without its link
// (prev_seq NULL) was either signed before links existed (v1) or lost its
// link in a node that ran an older tier0 during a rolling upgrade (it
// decoded the Raft command without the field and exported it so): if the
// v1 message does not verify, the v2 one with the previous stored
// checkpoint as the link is tried, and the link restored when it does.
func verifyCheckpoint(cps []Checkpoint, i int, roots []*x509.Certificate) error {
	c := &cps[i]
	err := c.Verify(roots)
	if err == nil || c.Prev != nil {
		return err
	}
	var prev uint64
	if i > 0 {
		prev = cps[i-1].Seq
	}
	c.Prev = &prev
	if c.Verify(roots) == nil {
		return nil
	}
	c.Prev = nil
	return err
}

// brokenLinks reports the checkpoints that a valid checkpoint in start..to
// names as its predecessor but the store lacks: deleted. A link to before
// start (the anchor's predecessor, pruned with the records) is not checked.
func brokenLinks(cps []Checkpoint, valid map[uint64][]byte, start, to uint64) []problem {
	stored := make(map[uint64]bool, len(cps))
	for _, c := range cps {
		stored[c.Seq] = true
	}
	var out []problem
	for _, c := range cps {
		if _, ok := valid[c.Seq]; !ok || c.Prev == nil || c.Seq < start || (to != 0 && c.Seq > to) {
			continue
		}
		if p := *c.Prev; p >= start && p > 0 && !stored[p] {
			out = append(out, problem{p, ProblemMissingCheckpoint,
				fmt.Sprintf("checkpoint %d was deleted: signed checkpoint %d names it as the one before it", p, c.Seq)})
		}
	}
	return out
}

// RequireCheckpoint reports checkpoint seq, which the journal says the
// store holds (ha.Node.NewestExportedCheckpoint: the newest exported one,
// which no later checkpoint names), as missing when r found no problem but
// verified no checkpoint at or beyond it. open says the range had no upper
// bound: then a seq beyond the last stored record means the end of the
// store was cut, records and checkpoint alike (ProblemMissing after the
// last record). Read seq before verifying, so that a checkpoint exported
// meanwhile is not mistaken for a deleted one.
func (r *AuditResult) RequireCheckpoint(seq uint64, open bool) {
	if !r.OK() || seq == 0 || seq <= r.LastCheckpoint || seq < r.From || seq <= r.Base {
		return
	}
	switch {
	case seq <= r.To:
		r.FirstBad, r.Problem = seq, ProblemMissingCheckpoint
		r.Detail = fmt.Sprintf("checkpoint %d was exported to the store but is not there: deleted (the journal names it as the newest exported checkpoint)", seq)
	case open:
		r.FirstBad, r.Problem = r.To+1, ProblemMissing
		r.Detail = fmt.Sprintf("the store ends at seq %d, but the journal exported checkpoint %d: records and checkpoints were removed at the end", r.To, seq)
	}
}

type problem struct {
	seq    uint64
	kind   string
	detail string
}

// fail records the lowest-seq problem (the chain's first on a tie).
func (r *AuditResult) fail(ps []problem) {
	if len(ps) == 0 {
		r.FirstBad, r.Problem, r.Detail = 0, "", ""
		return
	}
	best := ps[0]
	for _, p := range ps[1:] {
		if p.seq < best.seq {
			best = p
		}
	}
	r.FirstBad, r.Problem, r.Detail = best.seq, best.kind, best.detail
}

func chainDetail(v VerifyResult) string {
	switch v.Problem {
	case ProblemModified:
		return fmt.Sprintf("record %d does not hash to its stored hash: a field, the certificate or prev_hash was edited", v.FirstBad)
	case ProblemMissing:
		return fmt.Sprintf("record %d is missing (deleted, or later records renumbered)", v.FirstBad)
	case ProblemInserted:
		return fmt.Sprintf("record %d is not part of the chain: inserted", v.FirstBad)
	case ProblemReordered:
		return fmt.Sprintf("record %d is out of order: rows swapped", v.FirstBad)
	case ProblemBrokenLink:
		return fmt.Sprintf("record %d does not link to record %d: the previous record was edited and re-hashed", v.FirstBad, v.FirstBad-1)
	}
	return ""
}

// hookStore calls fn for every record Range yields.
type hookStore struct {
	Ranger
	fn func(*record.Record)
}

func (h *hookStore) Range(ctx context.Context, from, to uint64, fn func(*record.Record) error) error {
	return h.Ranger.Range(ctx, from, to, func(r *record.Record) error {
		h.fn(r)
		return fn(r)
	})
}

// IsSchemaTooNew reports whether err says the database is newer than this binary.
func IsSchemaTooNew(err error) bool { return errors.Is(err, ErrSchemaTooNew) }
