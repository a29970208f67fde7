package ha

import (
	"encoding/json"
	"fmt"
	"log/slog"
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
}

type handler func(f *fsm, payload []byte) any

// handlers is the dispatch table. Types not in it are unknown.
var handlers = map[byte]handler{
	cmdRecords:              (*fsm).applyRecords,
	cmdExported:             (*fsm).applyExported,
	cmdCreateEntry:          (*fsm).applyCreateEntry,
	cmdCreateEntryFederated: (*fsm).applyCreateEntryFederated,
	cmdDeleteEntry:          (*fsm).applyDeleteEntry,
	cmdCreateToken:          (*fsm).applyCreateToken,
	cmdConsumeToken:         (*fsm).applyConsumeToken,
	cmdSetBundle:            (*fsm).applySetBundle,
	cmdCARoots:              (*fsm).applyCARoots,
	cmdTrust:                (*fsm).applyTrust,
	cmdCheckpoint:           (*fsm).applyCheckpoint, // checkpoint.go
	cmdLineage:              (*fsm).applyLineage,    // lineage.go
}

func newFSM(log *slog.Logger, m *metrics) *fsm {
	return &fsm{log: log, m: m, s: newState(), notify: make(chan struct{})}
}

// Apply implements raft.FSM. It never panics on bad input: an unknown
// non-ignorable type or a malformed payload is an error response and leaves
// the state unchanged.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	if len(l.Data) == 0 {
		f.log.Error("ha: fsm: empty command", "index", l.Index)
		return fmt.Errorf("ha: fsm: empty command at index %d: %w", l.Index, ErrInvalid)
	}
	typ, payload := l.Data[0], l.Data[1:]
	h, ok := handlers[typ]
	if !ok {
		if typ&ignorableFlag != 0 {
			f.log.Warn("ha: fsm: skipping unknown ignorable command", "type", fmt.Sprintf("0x%02x", typ), "index", l.Index)
			return nil
		}
		f.log.Error("ha: fsm: UNKNOWN COMMAND TYPE; this node may be older than the leader", "type", fmt.Sprintf("0x%02x", typ), "index", l.Index)
		return fmt.Errorf("ha: fsm: unknown command type 0x%02x at index %d: %w", typ, l.Index, ErrInvalid)
	}
	return h(f, payload)
}

func decode(name string, payload []byte, v any) error {
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("ha: fsm: decode %s: %w: %w", name, ErrInvalid, err)
	}
	return nil
}

// applyRecords appends a batch: Seq = state.Seq+1.., CommittedAt = the
// leader's stamp (never earlier than the previous record's), chained with
// record.Seal. Responds with the stored records (the leader copies the
// assigned fields back to the callers).
func (f *fsm) applyRecords(payload []byte) any {
	var c recordsCmd
	if err := decode("records", payload, &c); err != nil {
		return err
	}
	recs := make([]*record.Record, len(c.Recs))
	for i, raw := range c.Recs {
		var w wireRecord
		if err := decode("record", raw, &w); err != nil {
			return err
		}
		if err := w.validate(); err != nil {
			return err
		}
		recs[i] = w.record()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.s
	at := record.Truncate(c.Now)
	if at.Before(s.lastCommit) {
		at = s.lastCommit // a new leader with a slower clock
	}
	for _, r := range recs {
		s.seq++
		r.Seq = s.seq
		r.CommittedAt = at
		s.head = r.Seal(s.head)
	}
	s.lastCommit = at
	s.tail = append(s.tail, recs...)
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
	var c createEntryCmd
	if err := decode("create entry", payload, &c); err != nil {
		return err
	}
	c.Entry.FederatesWith = nil
	return f.createEntry(c.Entry)
}

// applyCreateEntryFederated applies cmdCreateEntryFederated.
func (f *fsm) applyCreateEntryFederated(payload []byte) any {
	var c createEntryCmd
	if err := decode("create entry", payload, &c); err != nil {
		return err
	}
	return f.createEntry(c.Entry)
}

func (f *fsm) createEntry(e Entry) any {
	if e.ID == "" || e.Agent == "" || e.SPIFFEID == "" || e.TTL < 0 {
		return fmt.Errorf("ha: create entry: id, agent and spiffe id are required: %w", ErrInvalid)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.s.entries[e.ID]; ok {
		return fmt.Errorf("ha: create entry: id %s: %w", e.ID, ErrExists)
	}
	if _, ok := f.s.byKey[entryKey(e.Agent, e.SPIFFEID)]; ok {
		return fmt.Errorf("ha: create entry: %s for %s: %w", e.SPIFFEID, e.Agent, ErrExists)
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
	e, ok := f.s.entries[c.ID]
	if !ok {
		return fmt.Errorf("ha: delete entry %q: %w", c.ID, ErrNotFound)
	}
	f.s.removeEntry(e)
	return nil
}

func (f *fsm) applyCreateToken(payload []byte) any {
	var c createTokenCmd
	if err := decode("create token", payload, &c); err != nil {
		return err
	}
	if err := validTokenHash(c.Hash); err != nil {
		return err
	}
	if c.Agent == "" || !c.ExpiresAt.After(c.Now) {
		return fmt.Errorf("ha: create token: agent and a future expiry are required: %w", ErrInvalid)
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
	var c setBundleCmd
	if err := decode("set bundle", payload, &c); err != nil {
		return err
	}
	if c.TrustDomain == "" || len(c.Roots) == 0 {
		return fmt.Errorf("ha: set bundle: trust domain and at least one root are required: %w", ErrInvalid)
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
