package storage

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage/internal/core"
)

// DecisionChainReader reads the decision chain (migration 0010): both
// backends and Lazy implement it.
type DecisionChainReader interface {
	// DecisionHead returns the last chained decision's seq and hash (0,
	// nil: none).
	DecisionHead(ctx context.Context) (uint64, []byte, error)
	// DecisionChain returns at most limit chained decisions with seq >=
	// from, in chain order.
	DecisionChain(ctx context.Context, from uint64, limit int) ([]Decision, error)
	// DecisionCheckpoints returns the signed decision checkpoints, in seq
	// order.
	DecisionCheckpoints(ctx context.Context) ([]record.DecisionCheckpoint, error)
}

// DecisionChainStore also stores decision checkpoints.
type DecisionChainStore interface {
	DecisionChainReader
	AppendDecisionCheckpoint(ctx context.Context, c record.DecisionCheckpoint) error
}

// Problems of the decision chain (VerifyDecisions).
const (
	ProblemDecisionDeleted            = "deleted decision"
	ProblemDecisionEdited             = "edited decision"
	ProblemDecisionBrokenLink         = "decision broken link"
	ProblemDecisionCheckpointForged   = "forged decision checkpoint"
	ProblemDecisionCheckpointMissing  = "missing decision checkpoint"
	ProblemDecisionCheckpointMismatch = "decision checkpoint mismatch"
)

// DecisionResult is the outcome of VerifyDecisions.
type DecisionResult struct {
	From, To       uint64 // chain seqs read (0, 0: no chained decision)
	Checked        uint64 // decisions verified in order before the first problem
	Checkpoints    int    // decision checkpoints whose signature and head verified
	LastCheckpoint uint64 // highest verified decision checkpoint; decisions after it are covered by the chain only
	FirstBad       uint64 // chain seq of the first problem (0: none)
	Problem        string // "" when intact, else a ProblemDecision* constant
	Detail         string
}

// OK reports whether no problem was found.
func (r DecisionResult) OK() bool { return r.Problem == "" }

// DecisionPage is how many decisions VerifyDecisions reads at once.
const DecisionPage = 2000

// VerifyDecisions recomputes the decision chain and checks every signed
// decision checkpoint against roots: its signature and certificate, its
// link to the checkpoint before it, and that the chain head at its seq is
// its head. A decision deleted (a gap in the seqs, or decisions removed at
// the end under a checkpoint), edited (its contents no longer hash to its
// hash), or edited and re-hashed (the next one no longer links to it) is
// reported with its seq; a consistent rewrite up to a checkpoint is a
// checkpoint mismatch. After `storage prune` the chain starts at the
// kept checkpoint's decision (its link to the pruned one before is not
// checked). Decisions newer than the
// newest checkpoint are covered by the chain only. It errors only when
// reading fails.
func VerifyDecisions(ctx context.Context, s DecisionChainReader, roots []*x509.Certificate) (DecisionResult, error) {
	var res DecisionResult
	cps, err := s.DecisionCheckpoints(ctx)
	if err != nil {
		return res, fmt.Errorf("storage: verify decisions: %w", err)
	}
	bad := func(seq uint64, problem, format string, args ...any) (DecisionResult, error) {
		res.FirstBad, res.Problem, res.Detail = seq, problem, fmt.Sprintf(format, args...)
		return res, nil
	}
	at := make(map[uint64]record.DecisionCheckpoint, len(cps))
	for i, c := range cps {
		if err := c.Verify(roots); err != nil {
			return bad(c.Seq, ProblemDecisionCheckpointForged, "decision checkpoint %d: %v", c.Seq, err)
		}
		if i > 0 && c.Prev != cps[i-1].Seq {
			return bad(c.Prev, ProblemDecisionCheckpointMissing, "decision checkpoint %d names %d as the one before it, but the store has %d: a signed decision checkpoint was deleted",
				c.Seq, c.Prev, cps[i-1].Seq)
		}
		at[c.Seq] = c
	}
	var prev []byte
	var last uint64
	for from := uint64(1); ; {
		page, err := s.DecisionChain(ctx, from, DecisionPage)
		if err != nil {
			return res, fmt.Errorf("storage: verify decisions: %w", err)
		}
		for i := range page {
			d := &page[i]
			if res.From == 0 {
				res.From = d.Seq
				_, anchor := at[d.Seq]
				switch cp, ok := at[d.Seq-1]; {
				case d.Seq == 1:
					prev = record.Genesis
				case anchor:
					prev = d.PrevHash // pruned before the checkpoint at d (its link is not checked)
				case ok:
					prev = cp.Head
				default:
					return bad(1, ProblemDecisionDeleted, "decisions 1..%d are missing and no signed decision checkpoint at %d marks them pruned",
						d.Seq-1, d.Seq-1)
				}
				last = d.Seq - 1
			}
			if d.Seq != last+1 {
				return bad(last+1, ProblemDecisionDeleted, "decision %d is missing: the chain goes from %d to %d", last+1, last, d.Seq)
			}
			r := core.DecisionRecord(*d)
			if !bytes.Equal(d.PrevHash, prev) {
				if bytes.Equal(r.Hash(d.PrevHash), d.Hash) {
					return bad(d.Seq, ProblemDecisionBrokenLink, "decision %d does not link to decision %d: the one before it was edited and re-hashed", d.Seq, last)
				}
				return bad(d.Seq, ProblemDecisionEdited, "decision %d no longer hashes to its stored hash and does not link to %d: edited, renumbered or reordered", d.Seq, last)
			}
			if !bytes.Equal(r.Hash(prev), d.Hash) {
				return bad(d.Seq, ProblemDecisionEdited, "decision %d no longer hashes to its stored hash: a field (caller, requested, allowed, code, reason, time, node) was edited, or it was renumbered or reordered", d.Seq)
			}
			if c, ok := at[d.Seq]; ok {
				if !bytes.Equal(c.Head, d.Hash) {
					return bad(d.Seq, ProblemDecisionCheckpointMismatch, "the chain head at decision %d differs from the signed decision checkpoint: decisions up to it were rewritten", d.Seq)
				}
				res.Checkpoints++
				res.LastCheckpoint = d.Seq
			}
			prev, last = d.Hash, d.Seq
			res.Checked++
			res.To = d.Seq
		}
		if len(page) < DecisionPage {
			break
		}
		from = last + 1
	}
	if len(cps) > 0 && cps[0].Prev != 0 && res.From <= 1 { // not pruned: nothing may precede the first
		return bad(cps[0].Prev, ProblemDecisionCheckpointMissing, "decision checkpoint %d names %d as the one before it, which is missing: a signed decision checkpoint was deleted",
			cps[0].Seq, cps[0].Prev)
	}
	if n := len(cps); n > 0 && cps[n-1].Seq > last {
		return bad(last+1, ProblemDecisionDeleted, "a signed decision checkpoint is at %d but the chain ends at %d: decisions were removed at the end", cps[n-1].Seq, last)
	}
	return res, nil
}

// DecisionHead implements DecisionChainReader once connected.
func (l *Lazy) DecisionHead(ctx context.Context) (uint64, []byte, error) {
	c, err := l.chain()
	if err != nil {
		return 0, nil, err
	}
	return c.DecisionHead(ctx)
}

// DecisionChain implements DecisionChainReader once connected.
func (l *Lazy) DecisionChain(ctx context.Context, from uint64, limit int) ([]Decision, error) {
	c, err := l.chain()
	if err != nil {
		return nil, err
	}
	return c.DecisionChain(ctx, from, limit)
}

// DecisionCheckpoints implements DecisionChainReader once connected.
func (l *Lazy) DecisionCheckpoints(ctx context.Context) ([]record.DecisionCheckpoint, error) {
	c, err := l.chain()
	if err != nil {
		return nil, err
	}
	return c.DecisionCheckpoints(ctx)
}

// AppendDecisionCheckpoint implements DecisionChainStore once connected.
func (l *Lazy) AppendDecisionCheckpoint(ctx context.Context, cp record.DecisionCheckpoint) error {
	c, err := l.chain()
	if err != nil {
		return err
	}
	return c.AppendDecisionCheckpoint(ctx, cp)
}

func (l *Lazy) chain() (DecisionChainStore, error) {
	s, err := l.store()
	if err != nil {
		return nil, err
	}
	c, ok := s.(DecisionChainStore)
	if !ok {
		return nil, fmt.Errorf("storage: %T keeps no decision chain", s)
	}
	return c, nil
}
