package decisions

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"log/slog"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
)

// SignerConfig configures RunSigner.
type SignerConfig struct {
	Store    storage.DecisionChainStore
	Leader   func() bool   // sign only while this is true (the Raft leader)
	Signer   crypto.Signer // the audit key
	CertDER  func() []byte // its certificate
	NodeID   string
	Interval time.Duration    // between rounds; default 1m
	Clock    func() time.Time // default time.Now
	Logger   *slog.Logger
}

// Signer signs decision checkpoints (one round: Round).
type Signer struct {
	cfg  SignerConfig
	last *record.DecisionCheckpoint // the newest stored, once read
}

// NewSigner checks cfg and fills defaults.
func NewSigner(cfg SignerConfig) (*Signer, error) {
	if cfg.Store == nil || cfg.Leader == nil || cfg.Signer == nil || cfg.CertDER == nil {
		return nil, fmt.Errorf("decisions: signer: store, leader, signer and certificate are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Signer{cfg: cfg}, nil
}

// Run signs a decision checkpoint every Interval while this node leads
// and the chain has grown, until ctx ends. A failed round is logged (once
// per distinct error) and retried.
func (s *Signer) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if !s.cfg.Leader() {
			s.last = nil // re-read after leadership moves
			continue
		}
		if err := s.Round(ctx); err != nil {
			if err.Error() != lastErr {
				s.cfg.Logger.Warn("decisions: decision checkpoint not signed; retrying every round", "error", err.Error())
			}
			lastErr = err.Error()
			s.last = nil
			continue
		}
		lastErr = ""
	}
}

// Round signs the decision chain's head when it is beyond the newest
// decision checkpoint, after checking that the decisions since that
// checkpoint link to its head and hash to their stored hashes (so nothing
// deleted or edited in between is signed over).
func (s *Signer) Round(ctx context.Context) error {
	st := s.cfg.Store
	if s.last == nil {
		cps, err := st.DecisionCheckpoints(ctx)
		if err != nil {
			return fmt.Errorf("decisions: signer: %w", err)
		}
		s.last = &record.DecisionCheckpoint{Head: record.Genesis}
		if n := len(cps); n > 0 {
			s.last = &cps[n-1]
		}
	}
	headSeq, head, err := st.DecisionHead(ctx)
	if err != nil {
		return fmt.Errorf("decisions: signer: %w", err)
	}
	if headSeq <= s.last.Seq {
		return nil
	}
	prev, seq := s.last.Head, s.last.Seq
	for seq < headSeq {
		page, err := st.DecisionChain(ctx, seq+1, storage.DecisionPage)
		if err != nil {
			return fmt.Errorf("decisions: signer: %w", err)
		}
		if len(page) == 0 {
			return fmt.Errorf("decisions: signer: the chain ends at %d below its head %d", seq, headSeq)
		}
		for _, d := range page {
			if d.Seq > headSeq {
				break
			}
			r := record.Decision{Seq: d.Seq, At: d.At, NodeID: d.NodeID, Caller: d.Caller, Requested: d.Requested, Allowed: d.Allowed, Code: d.Code, Reason: d.Reason}
			if d.Seq != seq+1 || !bytes.Equal(d.PrevHash, prev) || !bytes.Equal(r.Hash(prev), d.Hash) {
				return fmt.Errorf("decisions: signer: decision %d does not extend the chain after %d (deleted, edited or reordered): not signing", d.Seq, seq)
			}
			prev, seq = d.Hash, d.Seq
		}
	}
	if !bytes.Equal(prev, head) {
		return fmt.Errorf("decisions: signer: the chain head at %d changed while it was read", headSeq)
	}
	c := record.DecisionCheckpoint{Seq: headSeq, Head: head, SignedAt: s.cfg.Clock(), NodeID: s.cfg.NodeID, CertDER: s.cfg.CertDER(), Prev: s.last.Seq}
	if err := c.Sign(s.cfg.Signer); err != nil {
		return fmt.Errorf("decisions: signer: %w", err)
	}
	if err := st.AppendDecisionCheckpoint(ctx, c); err != nil {
		return fmt.Errorf("decisions: signer: %w", err)
	}
	s.last = &c
	return nil
}
