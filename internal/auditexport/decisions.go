package auditexport

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
)

// Decision is one decision line: a chained authorization decision with
// every hashed field and its chain hashes (docs/AUDIT.md "The decision
// chain").
type Decision struct {
	Seq       uint64    `json:"seq"`
	At        time.Time `json:"at"`
	NodeID    string    `json:"node_id"`
	Caller    string    `json:"caller"`
	Requested string    `json:"requested"`
	Allowed   bool      `json:"allowed"`
	Code      string    `json:"code"`
	Reason    string    `json:"reason"`
	PrevHash  []byte    `json:"prev_hash"`
	Hash      []byte    `json:"hash"`
}

// writeDecisions writes s's decision chain (in chain order) and its
// signed decision checkpoints, when s keeps them.
func writeDecisions(ctx context.Context, enc *json.Encoder, s Source) (int, error) {
	dc, ok := s.(storage.DecisionChainReader)
	if !ok {
		return 0, nil
	}
	n := 0
	for from := uint64(1); ; {
		page, err := dc.DecisionChain(ctx, from, storage.DecisionPage)
		if err != nil {
			return n, fmt.Errorf("auditexport: decisions: %w", err)
		}
		for _, d := range page {
			if err := enc.Encode(Line{Decision: &Decision{Seq: d.Seq, At: d.At, NodeID: d.NodeID, Caller: d.Caller, Requested: d.Requested,
				Allowed: d.Allowed, Code: d.Code, Reason: d.Reason, PrevHash: d.PrevHash, Hash: d.Hash}}); err != nil {
				return n, err
			}
			n++
			from = d.Seq + 1
		}
		if len(page) < storage.DecisionPage {
			break
		}
	}
	cps, err := dc.DecisionCheckpoints(ctx)
	if err != nil {
		return n, fmt.Errorf("auditexport: decision checkpoints: %w", err)
	}
	for i := range cps {
		if err := enc.Encode(Line{DecisionCheckpoint: &cps[i]}); err != nil {
			return n, err
		}
	}
	return n, nil
}

// DecisionHead implements storage.DecisionChainReader: the last decision
// line.
func (e *Export) DecisionHead(context.Context) (uint64, []byte, error) {
	if len(e.decs) == 0 {
		return 0, nil, nil
	}
	d := e.decs[len(e.decs)-1]
	return d.Seq, d.Hash, nil
}

// DecisionChain implements storage.DecisionChainReader: decision lines
// with seq >= from in file order, so that a line moved is reported.
func (e *Export) DecisionChain(_ context.Context, from uint64, limit int) ([]storage.Decision, error) {
	var out []storage.Decision
	for _, d := range e.decs {
		if d.Seq >= from && len(out) < limit {
			out = append(out, d)
		}
	}
	return out, nil
}

// DecisionCheckpoints implements storage.DecisionChainReader.
func (e *Export) DecisionCheckpoints(context.Context) ([]record.DecisionCheckpoint, error) {
	return e.dcps, nil
}

func (e *Export) addDecision(x *Decision) {
	e.decs = append(e.decs, storage.Decision{Seq: x.Seq, At: x.At, NodeID: x.NodeID, Caller: x.Caller, Requested: x.Requested,
		Allowed: x.Allowed, Code: x.Code, Reason: x.Reason, PrevHash: x.PrevHash, Hash: x.Hash})
}
