package ha

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/tier0-ca/tier0/ca/record"
)

// fsm is the raft.FSM. It is deterministic: it reads only the log entry and
// its own state (never time.Now, a KMS or a database). Responses returned from
// Apply are either an error (wrapping a sentinel) or a typed value, read by
// the leader through ApplyFuture.Response().
type fsm struct {
	log *slog.Logger
	m   *metrics

	mu     sync.RWMutex
	s      *state
	notify chan struct{} // closed and replaced when records are appended

	restores atomic.Int64 // successful Restore calls (observability, tests)
	running  atomic.Bool  // set once raft.NewRaft returned (it restores the local snapshot itself)

	// diverged is the latch (health.go): set at the first entry this node
	// cannot apply; from then on no entry is applied and no snapshot is
	// taken. Only Restore (a whole new state) clears it.
	diverged  atomic.Pointer[divergedError]
	onDiverge func() // called once per latch, on its own goroutine (the node hands leadership away)
}

// entry is the raft position of the entry being applied.
type entry struct{ index, term uint64 }

type handler func(f *fsm, e entry, payload []byte) any

// plain adapts a handler that needs no raft position.
func plain(h func(f *fsm, payload []byte) any) handler {
	return func(f *fsm, _ entry, payload []byte) any { return h(f, payload) }
}

// handlers is the dispatch table. Types not in it are unknown.
var handlers = map[byte]handler{
	cmdRecords:              (*fsm).applyRecords,
	cmdExported:             plain((*fsm).applyExported),
	cmdCreateEntry:          plain((*fsm).applyCreateEntry),
	cmdCreateEntryFederated: plain((*fsm).applyCreateEntryFederated),
	cmdDeleteEntry:          plain((*fsm).applyDeleteEntry),
	cmdCreateToken:          plain((*fsm).applyCreateToken),
	cmdConsumeToken:         plain((*fsm).applyConsumeToken),
	cmdSetBundle:            plain((*fsm).applySetBundle),
	cmdCARoots:              plain((*fsm).applyCARoots),
	cmdCAKeyReport:          plain((*fsm).applyCAKeyReport), // castate_gate.go
	cmdCATaint:              plain((*fsm).applyCATaint),     // castate_taint.go
	cmdTrust:                plain((*fsm).applyTrust),
	cmdCheckpoint:           plain((*fsm).applyCheckpoint),        // checkpoint.go
	cmdLineage:              plain((*fsm).applyLineage),           // lineage.go
	cmdRecordAttestation:    plain((*fsm).applyRecordAttestation), // attest.go
	cmdCreateNodeEntry:      plain((*fsm).applyCreateNodeEntry),   // attest.go
}

func newFSM(log *slog.Logger, m *metrics) *fsm {
	m.diverged.Set(0)
	return &fsm{log: log, m: m, s: newState(), notify: make(chan struct{})}
}

// Apply implements raft.FSM. It never panics on bad input. A command every
// node refuses alike (an entry that exists, a failed check) is an error
// response and leaves the state unchanged. An entry this node cannot apply
// (empty, an altered digest, an unknown non-ignorable type, a payload that
// does not decode, a chain head that differs from the leader's) latches
// the node diverged: the state stays as it was before that entry and no
// later entry is applied (health.go, DESIGN.md "Divergence latch").
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	if d := f.diverged.Load(); d != nil {
		f.m.divergedSkipped.Inc()
		return fmt.Errorf("ha: fsm: entry %d not applied: %w", l.Index, d)
	}
	if len(l.Data) == 0 {
		return f.latch(l, 0, errors.New("empty command"))
	}
	typ := l.Data[0]
	if _, _, err := checkDigest(l.Data); err != nil {
		return f.latch(l, typ, err)
	}
	h, ok := handlers[typ]
	if !ok {
		if typ&ignorableFlag != 0 {
			f.log.Warn("ha: fsm: skipping unknown ignorable command", "type", fmt.Sprintf("0x%02x", typ), "index", l.Index)
			return nil
		}
		return f.latch(l, typ, errors.New("unknown command type (is this node older than the leader?)"))
	}
	resp := h(f, entry{index: l.Index, term: l.Term}, l.Data[1:])
	if err, isErr := resp.(error); isErr && errors.Is(err, errCannotApply) {
		return f.latch(l, typ, err)
	}
	return resp
}

// latch records the divergence once (one ERROR line, the gauge) and
// returns it as the entry's response.
func (f *fsm) latch(l *raft.Log, typ byte, reason error) error {
	d := &divergedError{index: l.Index, typ: typ, reason: reason.Error()}
	if !f.diverged.CompareAndSwap(nil, d) {
		return f.diverged.Load()
	}
	f.log.Error("ha: fsm: DIVERGED: a committed raft entry cannot be applied; this node stops applying the log and refuses writes until repaired (docs/OPERATIONS.md)",
		"index", l.Index, "term", l.Term, "type", fmt.Sprintf("0x%02x", typ), "reason", d.reason)
	f.m.diverged.Set(1)
	if f.onDiverge != nil {
		go f.onDiverge()
	}
	return d
}

// divergence returns the latched divergence, or nil.
func (f *fsm) divergence() error {
	if d := f.diverged.Load(); d != nil {
		return d
	}
	return nil
}

// decode unmarshals a payload; a payload that does not decode cannot be
// applied (the leader never proposes one).
func decode(name string, payload []byte, v any) error {
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("ha: fsm: decode %s: %w: %w", name, errCannotApply, err)
	}
	return nil
}

// applyRecords appends a batch: Seq = state.Seq+1.., CommittedAt = the
// leader's stamp (never earlier than the previous record's), chained with
// record.Seal. Responds with the stored records (the leader copies the
// assigned fields back to the callers).
//
// When the entry carries the leader's expected position (recordsExpect) and
// is in the term it was computed in, the journal must be where the leader's
// was and end where the leader's ended; otherwise this node cannot apply it
// (its state differs from the leader's, or it seals records differently)
// and latches, the state untouched, rather than fork the chain.
func (f *fsm) applyRecords(e entry, payload []byte) any {
	var c recordsCmd
	if err := decode("records", payload, &c); err != nil {
		return err
	}
	recs := make([]*record.Record, len(c.Recs))
	var keys []uint64 // idempotency key hashes (idem.go), nil when none
	for i, raw := range c.Recs {
		var w wireRecord
		if err := decode("record", raw, &w); err != nil {
			return err
		}
		if err := w.validate(); err != nil {
			return err
		}
		recs[i] = w.record()
		if w.Idem != 0 {
			if keys == nil {
				keys = make([]uint64, len(c.Recs))
			}
			keys[i] = w.Idem
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.s
	x := c.Expect
	if x != nil && x.Term != e.term {
		x = nil // proposed for another term than it was appended in: no longer exact
	}
	if x != nil && (x.Seq != s.seq || !bytes.Equal(x.Prev, s.head)) {
		return fmt.Errorf("ha: fsm: records: the journal here is at seq %d head %x, the leader proposed after seq %d head %x: %w",
			s.seq, s.head, x.Seq, x.Prev, errCannotApply)
	}
	head, at := sealBatch(recs, s.seq, s.head, s.lastCommit, c.Now)
	if x != nil && !bytes.Equal(head, x.Head) {
		return fmt.Errorf("ha: fsm: records: the batch seals to head %x here, to %x on the leader: %w", head, x.Head, errCannotApply)
	}
	s.seq += uint64(len(recs))
	s.head = head
	s.lastCommit = at
	s.tail = append(s.tail, recs...)
	s.idem.add(recs, keys, c.Now)
	close(f.notify)
	f.notify = make(chan struct{})
	f.m.journalSeq.Set(float64(s.seq))
	f.m.exportLag.Set(float64(len(s.tail)))
	return recs
}

// applyExported drops records <= Seq from the tail.
func (f *fsm) applyExported(payload []byte) any {
	var c exportedCmd
	if err := decode("exported", payload, &c); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.s
	if c.Seq > s.seq {
		return fmt.Errorf("ha: fsm: exported seq %d is beyond journal seq %d: %w", c.Seq, s.seq, ErrInvalid)
	}
	if c.Seq <= s.exportedSeq {
		return nil
	}
	n := int(c.Seq - s.exportedSeq)
	clear(s.tail[:n]) // let the records be collected; append reallocates later
	s.tail = s.tail[n:]
	s.exportedSeq = c.Seq
	f.m.exportLag.Set(float64(len(s.tail)))
	return nil
}

// applyCreateEntry applies cmdCreateEntry. That type never carries
// FederatesWith (old nodes do not know it), so a stray one is dropped here
// exactly as an old node drops it: every node applies the same entry.
func (f *fsm) applyCreateEntry(payload []byte) any {
	c, err := decodeValid[createEntryCmd]("create entry", payload)
	if err != nil {
		return err
	}
	c.Entry.FederatesWith, c.Entry.NodeSelectors = nil, nil
	return f.createEntry(c.Entry)
}

// applyCreateEntryFederated applies cmdCreateEntryFederated.
func (f *fsm) applyCreateEntryFederated(payload []byte) any {
	c, err := decodeValid[createEntryCmd]("create entry", payload)
	if err != nil {
		return err
	}
	c.Entry.NodeSelectors = nil // only cmdCreateNodeEntry carries them
	return f.createEntry(c.Entry)
}

// createEntry stores e (checked by createEntryCmd.validate).
func (f *fsm) createEntry(e Entry) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.s.entries[e.ID]; ok {
		return fmt.Errorf("ha: create entry: id %s: %w", e.ID, ErrExists)
	}
	if f.s.hasEntryKey(e) {
		return fmt.Errorf("ha: create entry: %s for %s%s: %w", e.SPIFFEID, e.Agent, strings.Join(e.NodeSelectors, ","), ErrExists)
	}
	f.s.putEntry(e)
	return e
}

func (f *fsm) applyDeleteEntry(payload []byte) any {
	var c deleteEntryCmd
	if err := decode("delete entry", payload, &c); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.s.entry(c.ID)
	if !ok {
		return fmt.Errorf("ha: delete entry %q: %w", c.ID, ErrNotFound)
	}
	f.s.removeEntry(e)
	return nil
}

func (f *fsm) applyCreateToken(payload []byte) any {
	c, err := decodeValid[createTokenCmd]("create token", payload)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.s.purgeTokens(c.Now)
	if _, ok := f.s.tokens[c.Hash]; ok {
		return fmt.Errorf("ha: create token: %w", ErrExists)
	}
	f.s.tokens[c.Hash] = token{Hash: c.Hash, Agent: c.Agent, ExpiresAt: c.ExpiresAt}
	return nil
}

// applyConsumeToken marks the token used and responds with its agent.
func (f *fsm) applyConsumeToken(payload []byte) any {
	var c consumeTokenCmd
	if err := decode("consume token", payload, &c); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.s.purgeTokens(c.Now)
	t, ok := f.s.tokens[c.Hash]
	if !ok || t.Used || !c.Now.Before(t.ExpiresAt) {
		return fmt.Errorf("ha: consume token: %w", ErrTokenInvalid)
	}
	t.Used = true
	f.s.tokens[c.Hash] = t
	return t.Agent
}

func (f *fsm) applySetBundle(payload []byte) any {
	c, err := decodeValid[setBundleCmd]("set bundle", payload)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b := Bundle{TrustDomain: c.TrustDomain, Roots: c.Roots, Sequence: f.s.bundle.Sequence + 1}
	f.s.bundle = b.clone()
	return b.Sequence
}

func validTokenHash(h string) error {
	if len(h) != 64 {
		return fmt.Errorf("ha: token hash must be 64 hex characters: %w", ErrInvalid)
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("ha: token hash must be lowercase hex: %w", ErrInvalid)
		}
	}
	return nil
}

// read runs fn under the read lock.
func (f *fsm) read(fn func(s *state)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.s)
}

// recordsNotify returns a channel closed at the next record append.
func (f *fsm) recordsNotify() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.notify
}

var _ raft.FSM = (*fsm)(nil)
