package ha

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tier0-ca/tier0/ca/record"
)

// Admin events (DESIGN.md "Admin events"). Every state change an operator
// or a node makes (entries, tokens, agents, CA roots, JWT keys,
// federation, the bundle, membership) is proposed as one cmdEvented entry:
// the change's own command and the admin event record that describes it.
// The FSM applies the command and, if it succeeds, appends the record to
// the journal in the same Apply, so the change and its record are in the
// log together or not at all (a refused change appends nothing). Not
// ignorable: a node that skipped it would miss the change and fork the
// chain.
const cmdEvented byte = 0x54

// eventedCmd is a state-change command with its event record. Op 0 is an
// event without a command: a change outside the FSM (raft membership),
// recorded after it took effect.
type eventedCmd struct {
	Op     byte            `json:"op"`
	Cmd    json.RawMessage `json:"cmd,omitempty"` // the command's JSON payload (what cmd Op carries alone)
	Event  wireEvent       `json:"event"`
	Now    time.Time       `json:"now"`              // the leader's clock: the record's CommittedAt
	Expect *recordsExpect  `json:"expect,omitempty"` // as in recordsCmd (the leader's journal position)
}

// wireEvent is an event record as proposed: the FSM assigns Seq,
// CommittedAt (NotBefore and NotAfter with it) and the chain.
type wireEvent struct {
	ID      string `json:"id"`
	Action  string `json:"action"`
	Subject string `json:"subject"`
	Actor   string `json:"actor"`
	Node    string `json:"node"`
	Detail  []byte `json:"detail,omitempty"` // a JSON object (base64 here, so its bytes survive re-encoding exactly)
}

func (w *wireEvent) record() *record.Record {
	return &record.Record{Serial: w.ID, Action: w.Action, SPIFFEID: w.Subject, AgentID: w.Actor,
		NodeID: w.Node, Detail: bytes.Clone(w.Detail)}
}

// eventOps are the commands that may travel in a cmdEvented entry (0: none).
var eventOps = map[byte]bool{
	0: true, cmdCreateEntry: true, cmdCreateEntryFederated: true, cmdCreateNodeEntry: true, cmdDeleteEntry: true,
	cmdCreateToken: true, cmdCreateTokenBy: true, cmdConsumeToken: true, cmdRevokeToken: true, cmdAttest: true,
	cmdAgentState: true, cmdSetBundle: true, cmdCARoots: true, cmdCATaint: true, cmdTrust: true, cmdRecordAttestation: true,
}

func (c *eventedCmd) validate() error {
	if !eventOps[c.Op] {
		return fmt.Errorf("ha: evented command: command 0x%02x cannot carry an event: %w", c.Op, ErrInvalid)
	}
	if err := record.CheckEvent(c.Event.record()); err != nil {
		return fmt.Errorf("ha: evented command: %w: %w", ErrInvalid, err)
	}
	if c.Op == 0 {
		if len(c.Cmd) != 0 {
			return fmt.Errorf("ha: evented command: an event without a command carries one: %w", ErrInvalid)
		}
		return nil
	}
	v := payloads[c.Op]()
	if err := json.Unmarshal(c.Cmd, v); err != nil {
		return fmt.Errorf("ha: evented command 0x%02x: %w: %w", c.Op, ErrInvalid, err)
	}
	return v.validate()
}

// applyEvented applies the command, then appends the event record. The
// journal position is checked (and the record sealed) before the command
// runs, so an entry this node cannot apply leaves the state untouched.
func (f *fsm) applyEvented(e entry, payload []byte) any {
	c, err := decodeValid[eventedCmd]("evented", payload)
	if err != nil {
		return err
	}
	rec := c.Event.record()
	var head []byte
	var at time.Time
	f.mu.RLock()
	s := f.s
	x := c.Expect
	if x != nil && x.Term != e.term {
		x = nil
	}
	if x != nil && (x.Seq != s.seq || !bytes.Equal(x.Prev, s.head)) {
		f.mu.RUnlock()
		return fmt.Errorf("ha: fsm: evented: the journal here is at seq %d head %x, the leader proposed after seq %d head %x: %w",
			s.seq, s.head, x.Seq, x.Prev, errCannotApply)
	}
	head, at = sealBatch([]*record.Record{rec}, s.seq, s.head, s.lastCommit, c.Now)
	f.mu.RUnlock()
	if x != nil && !bytes.Equal(head, x.Head) {
		return fmt.Errorf("ha: fsm: evented: the event seals to head %x here, to %x on the leader: %w", head, x.Head, errCannotApply)
	}
	var resp any
	if c.Op != 0 {
		// raft applies entries one at a time, so nothing changes the
		// journal between the check above and the append below.
		resp = handlers[c.Op](f, e, c.Cmd)
		if _, isErr := resp.(error); isErr {
			return resp // refused (nothing changed, no record) or cannot apply (latched by Apply)
		}
	}
	rec.NotBefore, rec.NotAfter = at, at
	f.mu.Lock()
	s = f.s
	s.seq++
	s.head = head
	s.lastCommit = at
	s.tail = append(s.tail, rec)
	close(f.notify)
	f.notify = make(chan struct{})
	f.m.journalSeq.Set(float64(s.seq))
	f.m.exportLag.Set(float64(len(s.tail)))
	f.mu.Unlock()
	return resp
}

// Event describes a state change for its admin event record.
type event struct {
	action  string
	subject string
	detail  any // marshalled to a JSON object; nil: the command's payload
}

type actorKey struct{}

// WithActor returns ctx carrying the SPIFFE ID of the caller on whose
// behalf a state change is made: the actor of its admin event record. The
// API sets it for every authenticated call; without it the actor is the
// node itself (Config.SelfID).
func WithActor(ctx context.Context, spiffeID string) context.Context {
	return context.WithValue(ctx, actorKey{}, spiffeID)
}

func (n *Node) actor(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	if n.cfg.SelfID != "" {
		return n.cfg.SelfID
	}
	return "tier0-node:" + n.cfg.NodeID
}

// maxInlineDetail is the largest command payload recorded as the detail
// itself; a larger one (a federated bundle) is recorded by its SHA-256.
const maxInlineDetail = 4 << 10

// applyEvent proposes command typ (payload v; typ 0: none) with the admin
// event ev in one entry, and returns the command's response.
func (n *Node) applyEvent(ctx context.Context, op string, typ byte, v any, ev event) (any, error) {
	if err := n.refuseIfDiverged(op); err != nil {
		return nil, err
	}
	c := eventedCmd{Op: typ}
	if typ != 0 {
		p, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("ha: %s: encode: %w", op, err)
		}
		c.Cmd = p
	}
	detail := c.Cmd
	if ev.detail != nil {
		p, err := json.Marshal(ev.detail)
		if err != nil {
			return nil, fmt.Errorf("ha: %s: encode event: %w", op, err)
		}
		detail = p
	}
	if len(detail) > maxInlineDetail {
		sum := sha256.Sum256(detail)
		detail = fmt.Appendf(nil, `{"payload_sha256":%q}`, hex.EncodeToString(sum[:]))
	}
	id, err := eventID()
	if err != nil {
		return nil, fmt.Errorf("ha: %s: %w", op, err)
	}
	c.Event = wireEvent{ID: id, Action: ev.action, Subject: ev.subject, Actor: n.actor(ctx), Node: n.cfg.NodeID, Detail: detail}
	data, err := encodeCommand(cmdEvented, c)
	if err != nil {
		return nil, err
	}
	if _, err := checkCommand(data); err != nil {
		return nil, err
	}
	if n.forwarding() {
		cmd, err := addDigest(data)
		if err != nil {
			return nil, err
		}
		return n.forwardApply(ctx, op, cmd) // the leader proposes it (handleForward: proposeEvented)
	}
	return n.proposeEvented(op, data)
}

// eventID is 128 random bits in lowercase hex without leading zeros, the
// spelling of a serial.
func eventID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[0] |= 0x80
	return new(big.Int).SetBytes(b[:]).Text(16), nil
}

// proposeEvented proposes a checked cmdEvented command (without digest) on
// this leader. Like a records entry it moves the chain, so it is proposed
// under recordsMu after this term's barrier, stamped with the leader's
// clock and expected journal position, and waited for whatever the
// caller's context says (the next records entry's expectation depends on
// its outcome; raft answers every future).
func (n *Node) proposeEvented(op string, data []byte) (any, error) {
	var c eventedCmd
	if err := json.Unmarshal(data[1:], &c); err != nil {
		return nil, fmt.Errorf("ha: %s: %w: %w", op, ErrInvalid, err)
	}
	n.recordsMu.Lock()
	defer n.recordsMu.Unlock()
	if err := n.refuseIfDiverged(op); err != nil {
		return nil, err
	}
	term, err := n.recordsTerm()
	if err != nil {
		return nil, err
	}
	c.Now = n.cfg.Clock()
	x := &recordsExpect{Term: term}
	var lastCommit time.Time
	n.fsm.read(func(s *state) { x.Seq, x.Prev, lastCommit = s.seq, bytes.Clone(s.head), s.lastCommit })
	x.Head, _ = sealBatch([]*record.Record{c.Event.record()}, x.Seq, x.Prev, lastCommit, c.Now)
	c.Expect = x
	cmd, err := encodeCommand(cmdEvented, c)
	if err != nil {
		return nil, err
	}
	if cmd, err = addDigest(cmd); err != nil {
		return nil, err
	}
	select {
	case <-n.closing:
		return nil, fmt.Errorf("ha: %s: %w: node closed", op, ErrUnavailable)
	default:
	}
	fut := n.raft.Apply(cmd, n.cfg.ApplyTimeout)
	done := make(chan error, 1)
	go func() { done <- fut.Error() }()
	select {
	case err = <-done:
	case <-n.raftStopped:
		select {
		case err = <-done:
		default:
			return nil, fmt.Errorf("ha: %s: %w: node closed", op, ErrUnavailable)
		}
	}
	if errors.Is(err, raft.ErrLeadershipLost) && fut.Index() > 0 {
		return nil, fmt.Errorf("ha: %s: %w: leadership lost, outcome of entry %d unknown", op, ErrUnavailable, fut.Index())
	}
	if err != nil {
		return nil, n.orWriteFault(op, err)
	}
	resp := fut.Response()
	if rerr, ok := resp.(error); ok {
		return nil, rerr
	}
	return resp, nil
}

func init() {
	handlers[cmdEvented] = (*fsm).applyEvented
	payloads[cmdEvented] = func() validator { return new(eventedCmd) }
}

// entrySubject is what an entry's event is about: its SPIFFE ID.
func entrySubject(e Entry) string {
	if e.SPIFFEID == "" {
		return "entry:" + e.ID
	}
	return e.SPIFFEID
}

// tokenSubject is the subject of the token tokenHash from local state (the
// agent or node it attests), or its hash prefix when unknown here.
func tokenSubject(n *Node, tokenHash string) string {
	var sub string
	n.fsm.read(func(s *state) { sub = s.tokens[tokenHash].Agent })
	if sub == "" {
		return "token:" + tokenHash[:min(16, len(tokenHash))]
	}
	return sub
}

// tdSubject is the trust domain's SPIFFE ID (the subject of CA and trust
// events), from the replicated bundle.
func (n *Node) tdSubject() string {
	if td := n.Bundle().TrustDomain; td != "" {
		return "spiffe://" + td
	}
	return "ca"
}

// firstStart reports whether the journal is a new cluster's (storecheck.go):
// nothing exported and nothing but admin events in it, such as the first
// CA root and JWT key a node creates before its exporter runs. A journal
// of an older tier0 (which recorded no events) holds certificates.
func (n *Node) firstStart() bool {
	first := true
	n.fsm.read(func(s *state) {
		if s.exportedSeq != 0 {
			first = false
			return
		}
		for _, r := range s.tail {
			if !r.IsEvent() {
				first = false
				return
			}
		}
	})
	return first
}
