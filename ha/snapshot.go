package ha

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tier0-ca/tier0/ca/record"
)

// Snapshot format (version 1): a stream of JSON values. The first is
// snapshotHeader; it is followed by exactly TailLen record.Record values
// (the unexported journal tail, in Seq order). Streaming keeps a large
// export backlog from being marshalled into one buffer.
const snapshotVersion = 1

type snapshotHeader struct {
	Version     int         `json:"version"`
	Entries     []Entry     `json:"entries"` // sorted by ID
	Tokens      []token     `json:"tokens"`  // sorted by hash
	Bundle      Bundle      `json:"bundle"`
	Seq         uint64      `json:"seq"`
	Head        []byte      `json:"head"`
	LastCommit  time.Time   `json:"last_commit"`
	ExportedSeq uint64      `json:"exported_seq"`
	TailLen     int         `json:"tail_len"`
	CA          *CAState    `json:"ca,omitempty"`    // absent in snapshots older than CA roots
	Trust       *TrustState `json:"trust,omitempty"` // JWT keys, federation (trust.go)
	Audit       *auditState `json:"audit,omitempty"` // checkpoints (checkpoint.go)
	// Lineage names the journal's cluster and lineage (lineage.go);
	// absent before the first exporter set it, and in older snapshots.
	Lineage *record.Lineage `json:"lineage,omitempty"`
	Attest  *attestState    `json:"attest,omitempty"` // node attestation (attest.go)
	// Idem is the idempotency index, packed (idem.go); absent when empty
	// and in older snapshots (an old node drops it: retries mint anew).
	Idem []byte `json:"idem,omitempty"`
	// Agents is the agent registry (agents.go), sorted by subject; absent
	// in older snapshots.
	Agents []Agent `json:"agents,omitempty"`
}

type fsmSnapshot struct {
	hdr  snapshotHeader
	tail []*record.Record // immutable once appended, safe to share
}

// Snapshot implements raft.FSM: it copies the state under the read lock;
// Persist writes it out concurrently with further Applies. A diverged FSM
// refuses: raft would record the snapshot as the state at its last applied
// index, which includes entries this node did not apply, and compact them
// away (raft logs the failure and retries later; the log keeps growing
// until the node is repaired). Backups refuse for the same reason.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if d := f.divergence(); d != nil {
		return nil, fmt.Errorf("ha: snapshot: refused, the state is not the log's: %w", d)
	}
	return f.snapshot(), nil
}

// snapshot copies the state (whatever the latch says). It holds the read
// lock, which stalls Apply, only for the copies: sorting (O(n log n) string
// compares, about a second for a million entries) is left to write, which
// runs in Persist concurrently with further Applies.
func (f *fsm) snapshot() *fsmSnapshot {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.s
	entries := s.allEntries()
	tokens := slices.Collect(maps.Values(s.tokens))
	return &fsmSnapshot{
		hdr: snapshotHeader{
			Version: snapshotVersion, Entries: entries, Tokens: tokens,
			Bundle: s.bundle.clone(), CA: new(s.ca.clone()), Trust: new(s.trust.clone()), Audit: new(s.audit.clone()), Seq: s.seq, Head: bytes.Clone(s.head),
			LastCommit: s.lastCommit, ExportedSeq: s.exportedSeq, TailLen: len(s.tail), Lineage: cloneLineage(s.lineage),
			Attest: new(s.attest.clone()),
			Idem:   s.idem.pack(),
			Agents: s.sortedAgents(),
		},
		tail: slices.Clone(s.tail),
	}
}

// Persist implements raft.FSMSnapshot.
func (fs *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := fs.write(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("ha: snapshot: close: %w", err)
	}
	return nil
}

func (fs *fsmSnapshot) write(w io.Writer) error {
	slices.SortFunc(fs.hdr.Entries, func(a, b Entry) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(fs.hdr.Tokens, func(a, b token) int { return strings.Compare(a.Hash, b.Hash) })
	bw := bufio.NewWriterSize(w, 1<<16)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(fs.hdr); err != nil {
		return fmt.Errorf("ha: snapshot: write header: %w", err)
	}
	for _, r := range fs.tail {
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("ha: snapshot: write record %d: %w", r.Seq, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("ha: snapshot: flush: %w", err)
	}
	return nil
}

// Release implements raft.FSMSnapshot.
func (fs *fsmSnapshot) Release() {}

// Restore implements raft.FSM: it builds a new state from the snapshot,
// checks it, and swaps it in under the write lock. On error the old state is
// kept. A whole new state clears the divergence latch (a follower that
// installs the leader's snapshot holds the cluster's state at that index;
// if a later entry in its own log cannot be applied, it latches again).
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s, err := readSnapshot(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.s = s
	close(f.notify)
	f.notify = make(chan struct{})
	if d := f.diverged.Swap(nil); d != nil {
		f.m.diverged.Set(0)
		f.log.Warn("ha: fsm: state replaced by a snapshot: the divergence latch is cleared", "was", d.Error())
	}
	f.mu.Unlock()
	f.restores.Add(1)
	if f.running.Load() {
		f.m.snapsInstalled.Inc()
	}
	f.m.journalSeq.Set(float64(s.seq))
	f.m.exportLag.Set(float64(len(s.tail)))
	return nil
}

func readSnapshot(r io.Reader) (*state, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<16))
	var h snapshotHeader
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("ha: restore: header: %w", err)
	}
	if h.Version != snapshotVersion {
		return nil, fmt.Errorf("ha: restore: unsupported snapshot version %d", h.Version)
	}
	if len(h.Head) != record.HashSize || h.ExportedSeq > h.Seq || uint64(h.TailLen) != h.Seq-h.ExportedSeq {
		return nil, fmt.Errorf("ha: restore: inconsistent journal (seq %d, exported %d, tail %d)", h.Seq, h.ExportedSeq, h.TailLen)
	}
	s := newState()
	for _, e := range h.Entries {
		if _, dup := s.entries[e.ID]; dup {
			return nil, fmt.Errorf("ha: restore: duplicate entry %s", e.ID)
		}
		s.putEntry(e)
	}
	for _, t := range h.Tokens {
		s.tokens[t.Hash] = t
	}
	for _, a := range h.Agents {
		s.agents[a.Subject] = a
	}
	s.bundle = h.Bundle
	if h.CA != nil {
		s.ca = *h.CA
	}
	if h.Trust != nil {
		s.trust = *h.Trust
	}
	if h.Audit != nil {
		s.audit = *h.Audit
	}
	if h.Attest != nil {
		s.attest = *h.Attest
	}
	if err := checkLineage(h.Lineage, h.Seq); err != nil {
		return nil, fmt.Errorf("ha: restore: %w", err)
	}
	s.lineage = h.Lineage
	s.seq, s.head, s.lastCommit, s.exportedSeq = h.Seq, h.Head, h.LastCommit, h.ExportedSeq
	idem, err := unpackIdem(h.Idem, h.Seq)
	if err != nil {
		return nil, err
	}
	s.idem = idem
	s.tail = make([]*record.Record, 0, h.TailLen)
	var prev []byte
	for i := range h.TailLen {
		r := new(record.Record)
		if err := dec.Decode(r); err != nil {
			return nil, fmt.Errorf("ha: restore: record %d of %d: %w", i+1, h.TailLen, err)
		}
		if r.Seq != h.ExportedSeq+uint64(i)+1 {
			return nil, fmt.Errorf("ha: restore: record seq %d out of order", r.Seq)
		}
		if prev == nil {
			prev = r.PrevHash // the record before the tail is exported: trust its link
		}
		if err := r.Verify(prev); err != nil {
			return nil, fmt.Errorf("ha: restore: %w", err)
		}
		prev = r.Hash
		s.tail = append(s.tail, r)
	}
	if prev != nil && !bytes.Equal(prev, s.head) {
		return nil, fmt.Errorf("ha: restore: %w: tail does not end at the journal head", record.ErrChain)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("ha: restore: trailing data after %d records", h.TailLen)
	}
	return s, nil
}
