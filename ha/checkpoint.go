package ha

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tier0-ca/tier0/ca/record"
)

// Signed checkpoints (invariant 7): every Every records or Interval, the
// leader signs (seq, head, time, node) with the CA's audit key and journals
// the checkpoint. The signature is made before proposing (the FSM never
// calls a KMS); the FSM checks only that the head is the journal's hash at
// seq. The exporter writes checkpoints to the record store after the
// records they cover. Old nodes skip the command (ignorable): a checkpoint
// is evidence, not state anything else depends on.
const cmdCheckpoint byte = ignorableFlag | 0x30

// Checkpoint defaults.
const (
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = time.Minute
)

type checkpointCmd struct {
	Op         string            `json:"op"` // "add", "exported"
	Checkpoint record.Checkpoint `json:"checkpoint,omitzero"`
	Seq        uint64            `json:"seq,omitempty"` // exported: checkpoints <= Seq are in the store
}

// auditState is the checkpoint part of the FSM state.
type auditState struct {
	Pending []record.Checkpoint `json:"pending,omitempty"` // not yet in the record store, by seq
	LastSeq uint64              `json:"last_seq"`          // seq of the newest checkpoint
	LastAt  time.Time           `json:"last_at"`           // its SignedAt
}

func (a auditState) clone() auditState {
	a.Pending = slices.Clone(a.Pending)
	return a
}

// CheckpointSink is implemented by record stores that keep checkpoints; the
// exporter checks for it with a type assertion.
type CheckpointSink interface {
	AppendCheckpoints(ctx context.Context, cps []record.Checkpoint) error
}

// CheckpointConfig configures RunCheckpointer.
type CheckpointConfig struct {
	Signer     crypto.Signer // the audit key
	CertDER    func() []byte // its current certificate (issued by a CA root)
	Every      int           // records between checkpoints; default 1000
	Interval   time.Duration // at most this long between checkpoints while records arrive; default 1m
	Registerer prometheus.Registerer
}

// RunCheckpointer signs and journals checkpoints while this node is the
// leader, until ctx ends (it then returns ctx.Err()). Failures are logged
// and retried at the next trigger; issuance never waits for a checkpoint.
func (n *Node) RunCheckpointer(ctx context.Context, cfg CheckpointConfig) error {
	if cfg.Signer == nil || cfg.CertDER == nil {
		return fmt.Errorf("ha: checkpoint: signer and certificate are required: %w", ErrInvalid)
	}
	if cfg.Every <= 0 {
		cfg.Every = DefaultCheckpointEvery
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultCheckpointInterval
	}
	made := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tier0_audit_checkpoints_total", Help: "Checkpoints signed and journaled by this node."})
	failed := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tier0_audit_checkpoint_errors_total", Help: "Checkpoints this node failed to sign or journal."})
	if cfg.Registerer != nil {
		made, failed = register(cfg.Registerer, made), register(cfg.Registerer, failed)
	}
	tick := time.NewTicker(min(cfg.Interval, time.Second))
	defer tick.Stop()
	for {
		if !n.isLeader() {
			if err := n.waitLeadership(ctx); err != nil {
				return err
			}
		}
		more := n.fsm.recordsNotify()
		var st auditState
		var seq uint64
		var head []byte
		n.cpMu.Lock() // see exportGate
		n.fsm.read(func(s *state) { st, seq, head = s.audit.clone(), s.seq, bytes.Clone(s.head) })
		now := n.cfg.Clock().UTC()
		due := seq > st.LastSeq && (seq-st.LastSeq >= uint64(cfg.Every) || now.Sub(st.LastAt) >= cfg.Interval) &&
			n.fsm.divergence() == nil // a diverged node writes nothing (and would say so every second)
		if due {
			switch err := n.checkpoint(ctx, cfg, seq, st.LastSeq, head, now); {
			case err == nil:
				made.Inc()
			case ctx.Err() == nil:
				failed.Inc()
				n.log.Warn("ha: checkpoint failed, retrying at the next trigger", "seq", seq, "err", err)
			}
		}
		n.cpMu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.closing:
			return fmt.Errorf("ha: checkpoint: %w: node closed", ErrUnavailable)
		case <-more:
		case <-tick.C:
		}
	}
}

func (n *Node) checkpoint(ctx context.Context, cfg CheckpointConfig, seq, prev uint64, head []byte, now time.Time) error {
	c := record.Checkpoint{Seq: seq, Head: head, SignedAt: now, NodeID: n.cfg.NodeID, CertDER: cfg.CertDER(), Prev: &prev}
	if len(c.CertDER) == 0 {
		return errors.New("ha: checkpoint: no audit key certificate")
	}
	if err := c.Sign(cfg.Signer); err != nil {
		return fmt.Errorf("ha: checkpoint: %w", err)
	}
	if _, err := n.apply(ctx, "checkpoint", cmdCheckpoint, checkpointCmd{Op: "add", Checkpoint: c}); err != nil {
		return err
	}
	return nil
}

// exportGate is taken by the exporter around each "exported" entry. The
// checkpointer holds cpMu from reading (seq, head) until its checkpoint is
// applied: the FSM checks the head against the journal, which knows the
// hash at seq only while record seq is the head or unexported. Without
// the gate, under load the exporter marked seq exported while the
// checkpoint was being signed, and the checkpoint failed with "head does
// not match the journal". Only this leader proposes either entry (both
// run after a barrier in its term), so the order holds on every node.
func (n *Node) exportGate() func() {
	if !n.cpMu.TryLock() {
		if h := n.testExportBlocked; h != nil {
			h()
		}
		n.cpMu.Lock()
	}
	return n.cpMu.Unlock
}

// NewestExportedCheckpoint returns the seq of the newest checkpoint this
// node knows to be in the record store (0: none known): the last one when
// none is pending export, else the one before the oldest pending (its
// signed link). A verifier that does not find it there has found a
// deleted checkpoint that no later checkpoint names. Meaningful only when
// the export sink keeps checkpoints (a CheckpointSink, as both record
// stores are): with another sink "exported" means only "handed over".
func (n *Node) NewestExportedCheckpoint() uint64 {
	var seq uint64
	n.fsm.read(func(s *state) {
		switch a := s.audit; {
		case len(a.Pending) == 0:
			seq = a.LastSeq
		case a.Pending[0].Prev != nil:
			seq = *a.Pending[0].Prev
		}
	})
	return seq
}

// pendingCheckpoints returns the checkpoints with seq <= upTo not yet exported.
func (n *Node) pendingCheckpoints(upTo uint64) []record.Checkpoint {
	var out []record.Checkpoint
	n.fsm.read(func(s *state) {
		for _, c := range s.audit.Pending {
			if c.Seq <= upTo {
				out = append(out, c)
			}
		}
	})
	return out
}

// exportCheckpoints writes the pending checkpoints covered by the store
// (seq <= stored) to sink, when it keeps checkpoints, and marks them exported.
func (n *Node) exportCheckpoints(ctx context.Context, sink Sink, stored uint64) error {
	cps := n.pendingCheckpoints(stored)
	if len(cps) == 0 {
		return nil
	}
	if cs, ok := sink.(CheckpointSink); ok {
		if err := cs.AppendCheckpoints(ctx, cps); err != nil {
			return fmt.Errorf("ha: export: checkpoints %d..%d: %w", cps[0].Seq, cps[len(cps)-1].Seq, err)
		}
	}
	_, err := n.apply(ctx, "export checkpoints", cmdCheckpoint, checkpointCmd{Op: "exported", Seq: cps[len(cps)-1].Seq})
	if errors.Is(err, ErrNotLeader) {
		return errLostLeadership
	}
	return err
}

func (c *checkpointCmd) validate() error {
	switch c.Op {
	case "add":
		if cp := c.Checkpoint; cp.Seq == 0 || len(cp.Signature) == 0 || len(cp.CertDER) == 0 {
			return fmt.Errorf("ha: checkpoint: seq, signature and certificate required: %w", ErrInvalid)
		}
	case "exported":
	default:
		return fmt.Errorf("ha: checkpoint: unknown op %q: %w", c.Op, ErrInvalid)
	}
	return nil
}

func (f *fsm) applyCheckpoint(payload []byte) any {
	c, err := decodeValid[checkpointCmd]("checkpoint", payload)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.s
	switch c.Op {
	case "add":
		cp := c.Checkpoint
		if cp.Seq > s.seq {
			return fmt.Errorf("ha: checkpoint: seq %d is beyond the journal at %d: %w", cp.Seq, s.seq, ErrInvalid)
		}
		if cp.Seq <= s.audit.LastSeq {
			return fmt.Errorf("ha: checkpoint: seq %d is not after the last checkpoint %d: %w", cp.Seq, s.audit.LastSeq, ErrInvalid)
		}
		if cp.Prev != nil && *cp.Prev != s.audit.LastSeq {
			return fmt.Errorf("ha: checkpoint: seq %d links to checkpoint %d, but the last one is %d: %w", cp.Seq, *cp.Prev, s.audit.LastSeq, ErrInvalid)
		}
		if want := s.hashAt(cp.Seq); want == nil || !bytes.Equal(want, cp.Head) {
			return fmt.Errorf("ha: checkpoint: head does not match the journal at seq %d: %w", cp.Seq, ErrInvalid)
		}
		a := s.audit.clone()
		a.Pending = append(a.Pending, cp)
		a.LastSeq, a.LastAt = cp.Seq, cp.SignedAt
		s.audit = a
		close(f.notify) // wake the exporter
		f.notify = make(chan struct{})
	case "exported":
		a := s.audit.clone()
		a.Pending = slices.DeleteFunc(a.Pending, func(x record.Checkpoint) bool { return x.Seq <= c.Seq })
		s.audit = a
	default:
		return fmt.Errorf("ha: checkpoint: unknown op %q: %w", c.Op, ErrInvalid)
	}
	return nil
}

// hashAt returns the hash of record seq while the journal still holds it
// (the head or an unexported record), else nil.
func (s *state) hashAt(seq uint64) []byte {
	if seq == s.seq {
		return s.head
	}
	if seq > s.exportedSeq && seq < s.seq && len(s.tail) > 0 {
		return s.tail[seq-s.exportedSeq-1].Hash
	}
	return nil
}
