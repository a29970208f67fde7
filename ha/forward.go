package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tier0-ca/tier0/ca/record"
)

// Leader forwarding (see DESIGN.md "Cluster"). A follower never proposes to
// raft: its committer sends each record batch to the leader, which puts it
// in its own group-commit queue (so the leader stamps the time and batches
// it with everyone else's), and other writes send the encoded command,
// applied by the leader as is. The leader answers after quorum commit.
//
// Retry rule: a forward is retried once, against the then leader, only when
// the first attempt certainly did not reach raft (ErrNotLeader from the
// old leader, or no connection). Any other failure has an unknown outcome:
// the caller gets ErrUnavailable and hands nothing out, so nothing is ever
// answered twice and a batch is never proposed twice.

// Forward kinds.
const (
	ForwardCommit     byte = 1 // payload: JSON []json.RawMessage (wireRecords); response: JSON []sealed
	ForwardApply      byte = 2 // payload: an encoded command; response: JSON fwdResponse
	ForwardMembership byte = 3 // payload: JSON MembershipChange; response: empty
)

// Forwarder carries a forward to the leader's raft address over the
// cluster's mTLS port (PeerForwarder, peer.go). Errors must wrap
// ErrNotLeader when the leader refused before proposing, ErrNoRoute when no
// connection could be made (nothing was sent), the leader's sentinel when
// it refused for another reason, and ErrUnavailable otherwise.
type Forwarder interface {
	Forward(ctx context.Context, leaderAddr string, kind byte, payload []byte) ([]byte, error)
}

// ErrNoRoute: the leader could not be reached; the request was not sent.
var ErrNoRoute = errors.New("ha: no route to leader")

// MembershipChange is a raft configuration change run on the leader.
type MembershipChange struct {
	Op      string `json:"op"` // "add-voter", "remove", "transfer"
	ID      string `json:"id,omitempty"`
	Address string `json:"address,omitempty"`
}

// sealed is what the leader hands back per forwarded record.
type sealed struct {
	Seq         uint64    `json:"seq"`
	CommittedAt time.Time `json:"at"`
	PrevHash    []byte    `json:"prev"`
	Hash        []byte    `json:"hash"`
}

// fwdResponse is an FSM response on the wire (ForwardApply): the typed
// value, or the FSM's error with its sentinel's name (errorKinds, peer.go).
type fwdResponse struct {
	Err      string          `json:"err,omitempty"`
	Sentinel string          `json:"sentinel,omitempty"`
	Type     string          `json:"type,omitempty"`
	Val      json.RawMessage `json:"val,omitempty"`
}

func encodeResponse(resp any, err error) ([]byte, error) {
	var r fwdResponse
	if err == nil {
		if e, ok := resp.(error); ok {
			err = e
		}
	}
	if err != nil {
		r.Err, r.Sentinel = err.Error(), errorKind(err)
		return json.Marshal(r)
	}
	switch v := resp.(type) {
	case nil:
	case Entry:
		r.Type = "entry"
	case CARoot:
		r.Type = "caroot"
	case string:
		r.Type = "string"
	case uint64:
		r.Type = "uint64"
	case int:
		r.Type = "int"
	default:
		r.Type = fmt.Sprintf("unsupported:%T", v)
		resp = nil
	}
	if resp != nil {
		b, err := json.Marshal(resp)
		if err != nil {
			return nil, fmt.Errorf("ha: forward: encode response: %w", err)
		}
		r.Val = b
	}
	return json.Marshal(r)
}

func decodeResponse(b []byte) (any, error) {
	var r fwdResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("ha: forward: decode response: %w: %w", ErrUnavailable, err)
	}
	if r.Err != "" {
		return nil, leaderError(r.Sentinel, r.Err, nil)
	}
	var v any
	var err error
	switch r.Type {
	case "":
		return nil, nil
	case "entry":
		var e Entry
		err = json.Unmarshal(r.Val, &e)
		v = e
	case "caroot":
		var c CARoot
		err = json.Unmarshal(r.Val, &c)
		v = c
	case "string":
		var s string
		err = json.Unmarshal(r.Val, &s)
		v = s
	case "uint64":
		var u uint64
		err = json.Unmarshal(r.Val, &u)
		v = u
	case "int":
		var i int
		err = json.Unmarshal(r.Val, &i)
		v = i
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ha: forward: decode %s response: %w", r.Type, err)
	}
	return v, nil
}

// forwarding reports whether writes from this node go to the leader.
func (n *Node) forwarding() bool {
	return n.cfg.Forwarder != nil && n.raft.State() != raft.Leader
}

// leaderAddr waits (bounded by ApplyTimeout and ctx) for a known leader
// and returns its raft address; "" means this node is the leader.
func (n *Node) leaderAddr(ctx context.Context, op string) (string, error) {
	deadline := time.NewTimer(n.cfg.ApplyTimeout)
	defer deadline.Stop()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if n.isLeader() {
			return "", nil
		}
		if addr, id := n.raft.LeaderWithID(); addr != "" && id != "" {
			return string(addr), nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("ha: %s: %w: %w", op, ErrUnavailable, ctx.Err())
		case <-n.closing:
			return "", fmt.Errorf("ha: %s: %w: node closed", op, ErrUnavailable)
		case <-deadline.C:
			return "", fmt.Errorf("ha: %s: %w: no leader", op, ErrUnavailable)
		case <-t.C:
		}
	}
}

// forward sends one request to the leader with the retry rule above. local
// runs it here instead when this node is (or becomes) the leader.
func (n *Node) forward(ctx context.Context, op string, kind byte, payload []byte, local func() ([]byte, error)) ([]byte, error) {
	var last error
	for attempt := 0; attempt < 2; attempt++ {
		addr, err := n.leaderAddr(ctx, op)
		if err != nil {
			return nil, err
		}
		if addr == "" {
			return local()
		}
		n.m.forwards.Inc()
		out, err := n.cfg.Forwarder.Forward(ctx, addr, kind, payload)
		if err == nil {
			return out, nil
		}
		last = err
		if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrNoRoute) {
			break
		}
		// Certainly not proposed: wait for the next leader and retry once.
		n.log.Info("ha: forward: leader refused or unreachable, retrying once", "op", op, "leader", addr, "err", err)
		n.waitLeaderNot(ctx, addr)
	}
	n.m.forwardErrors.Inc()
	switch {
	case errors.Is(last, ErrNotLeader), errors.Is(last, ErrNoRoute):
		// Still not sent after the retry: retryable.
		return nil, fmt.Errorf("ha: %s: forward: %w: %w", op, ErrUnavailable, last)
	case errorKind(last) != "":
		// The leader's answer (ErrUnavailable when the outcome is unknown).
		return nil, fmt.Errorf("ha: %s: forward: %w", op, last)
	default:
		return nil, fmt.Errorf("ha: %s: forward: %w: %w", op, ErrUnavailable, last)
	}
}

// waitLeaderNot waits (bounded) until the leader is someone other than addr.
func (n *Node) waitLeaderNot(ctx context.Context, addr string) {
	deadline := time.Now().Add(n.cfg.ApplyTimeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if a, _ := n.raft.LeaderWithID(); a != "" && string(a) != addr || n.isLeader() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-n.closing:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// forwardApply runs an encoded command on the leader.
func (n *Node) forwardApply(ctx context.Context, op string, data []byte) (any, error) {
	out, err := n.forward(ctx, op, ForwardApply, data, func() ([]byte, error) {
		return encodeResponse(n.applyLocal(ctx, op, data))
	})
	if err != nil {
		return nil, err
	}
	return decodeResponse(out)
}

// forwardCommit sends a record batch to the leader and returns the sealed
// records (only Seq, CommittedAt, PrevHash and Hash are set).
func (n *Node) forwardCommit(raws []json.RawMessage, wires []wireRecord) ([]*record.Record, error) {
	payload, err := json.Marshal(raws)
	if err != nil {
		return nil, fmt.Errorf("ha: commit: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*n.cfg.ApplyTimeout)
	defer cancel()
	// If this node became the leader meanwhile, apply here directly: the
	// committer may be waiting for this very forward's slot (fwdSem), so
	// queueing into it would deadlock until the timeout.
	out, err := n.forward(ctx, "commit", ForwardCommit, payload, func() ([]byte, error) {
		return n.applyRecordsEncoded(ctx, raws, wires)
	})
	if err != nil {
		return nil, err
	}
	var ss []sealed
	if err := json.Unmarshal(out, &ss); err != nil {
		return nil, fmt.Errorf("ha: commit: forward: decode: %w: %w", ErrUnavailable, err)
	}
	recs := make([]*record.Record, len(ss))
	for i, s := range ss {
		recs[i] = &record.Record{Seq: s.Seq, CommittedAt: s.CommittedAt, PrevHash: s.PrevHash, Hash: s.Hash}
	}
	return recs, nil
}

// applyRecordsEncoded proposes pre-marshalled records as one raft entry on
// this (leader) node, bypassing the committer, and encodes the sealed fields.
func (n *Node) applyRecordsEncoded(ctx context.Context, raws []json.RawMessage, wires []wireRecord) ([]byte, error) {
	if err := n.issueGate(ctx); err != nil {
		return nil, err
	}
	out, err := n.proposeRecords(raws, wires)
	if err != nil {
		return nil, err
	}
	return encodeSealed(out)
}

// encodeSealed encodes the fields the FSM assigned.
func encodeSealed(out []*record.Record) ([]byte, error) {
	ss := make([]sealed, len(out))
	for i, r := range out {
		ss[i] = sealed{Seq: r.Seq, CommittedAt: r.CommittedAt, PrevHash: r.PrevHash, Hash: r.Hash}
	}
	b, err := json.Marshal(ss)
	if err != nil {
		return nil, fmt.Errorf("ha: commit: encode: %w", err)
	}
	return b, nil
}

// commitLocalEncoded queues pre-marshalled records in this (leader) node's
// committer and encodes the sealed fields.
func (n *Node) commitLocalEncoded(ctx context.Context, raws []json.RawMessage, wires []wireRecord) ([]byte, error) {
	req := &commitReq{ctx: ctx, recs: raws, wires: wires, done: make(chan commitOutcome, 1)}
	out, err := n.enqueue(ctx, req)
	if err != nil {
		return nil, err
	}
	return encodeSealed(out)
}

// handleForward serves a forward from another node (the peer service,
// peer.go). It runs only on the leader (ErrNotLeader otherwise: the sender
// retries elsewhere) and never forwards again. It checks a forward as it
// checks its own writes before anything reaches the raft log: records
// decode and validate one by one; a command has a known type and decodes
// into that type's payload, which passes the type's checks (checkCommand);
// anything else is ErrInvalid. A diverged leader refuses everything with
// ErrDiverged (Unavailable).
func (n *Node) handleForward(ctx context.Context, kind byte, payload []byte) ([]byte, error) {
	if !n.isLeader() {
		return nil, fmt.Errorf("ha: forwarded request: %w", ErrNotLeader)
	}
	switch kind {
	case ForwardCommit:
		if err := n.refuseIfDiverged("forwarded commit"); err != nil {
			return nil, err
		}
		var raws []json.RawMessage
		if err := json.Unmarshal(payload, &raws); err != nil || len(raws) == 0 || len(raws) > n.cfg.MaxBatchRecords {
			return nil, fmt.Errorf("ha: forwarded commit: want 1..%d records: %w", n.cfg.MaxBatchRecords, ErrInvalid)
		}
		wires := make([]wireRecord, len(raws))
		for i, raw := range raws {
			if err := json.Unmarshal(raw, &wires[i]); err != nil {
				return nil, fmt.Errorf("ha: forwarded commit: record %d: %w: %w", i, ErrInvalid, err)
			}
			if err := wires[i].validate(); err != nil {
				return nil, fmt.Errorf("ha: forwarded commit: record %d: %w", i, err)
			}
		}
		return n.commitLocalEncoded(ctx, raws, wires)
	case ForwardApply:
		if err := n.refuseIfDiverged("forwarded apply"); err != nil {
			return nil, err
		}
		cmd, err := checkCommand(payload)
		if err != nil {
			return nil, fmt.Errorf("ha: forwarded apply: %w", err)
		}
		var resp any
		if cmd[0] == cmdEvented { // events.go: it moves the chain
			resp, err = n.proposeEvented("forwarded apply", cmd)
		} else {
			if cmd, err = addDigest(cmd); err != nil {
				return nil, err
			}
			resp, err = n.applyLocal(ctx, "forwarded apply", cmd)
		}
		if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrUnavailable) {
			return nil, err
		}
		return encodeResponse(resp, err)
	case ForwardMembership:
		var c MembershipChange
		if err := json.Unmarshal(payload, &c); err != nil {
			return nil, fmt.Errorf("ha: membership: %w: %w", ErrInvalid, err)
		}
		if c.ID == "" && c.Op != "transfer" {
			return nil, fmt.Errorf("ha: membership %s: id is required: %w", c.Op, ErrInvalid)
		}
		return nil, n.changeMembership(c)
	}
	return nil, fmt.Errorf("ha: forward kind %d: %w", kind, ErrInvalid)
}
