package ha

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
)

// commitReq is one Commit call waiting for the committer. recs holds the
// caller's records already marshalled (the committer never touches the
// caller's structs, so a caller that gives up cannot race with it).
type commitReq struct {
	ctx   context.Context
	recs  []json.RawMessage
	wires []wireRecord       // the same records decoded: the leader seals them to compute the expected head
	done  chan commitOutcome // buffered(1)
}

type commitOutcome struct {
	sealed []*record.Record // FSM's records for this request, in order
	err    error
}

// Commit durably appends recs to the journal (implements ca.Journal). It
// returns after raft has committed and applied the entry holding them
// (quorum, or fsync on one node). Concurrent callers share raft entries
// (group commit). On success each record has Seq, CommittedAt, PrevHash and
// Hash set, as computed by the FSM. On error the records' fate is unknown
// (an ErrUnavailable or a context error may still have committed them) and
// the caller must not hand out the certificates.
func (n *Node) Commit(ctx context.Context, recs []*record.Record) error {
	return n.commit(ctx, recs, nil)
}

// commit is Commit with optional idempotency key hashes (CommitKeyed).
func (n *Node) commit(ctx context.Context, recs []*record.Record, keys []uint64) error {
	if len(recs) == 0 {
		return nil
	}
	if err := n.refuseIfDiverged("commit"); err != nil {
		return err
	}
	start := time.Now()
	raws := make([]json.RawMessage, len(recs))
	wires := make([]wireRecord, len(recs))
	for i, r := range recs {
		if r == nil {
			return fmt.Errorf("ha: commit: record %d is nil: %w", i, ErrInvalid)
		}
		w := toWire(r)
		if keys != nil {
			w.Idem = keys[i]
		}
		if err := w.validate(); err != nil {
			return fmt.Errorf("ha: commit: record %d: %w", i, err)
		}
		b, err := json.Marshal(w)
		if err != nil {
			return fmt.Errorf("ha: commit: record %d: %w", i, err)
		}
		raws[i], wires[i] = b, w
	}
	if err := n.issueGate(ctx); err != nil { // storecheck.go
		return err
	}
	req := &commitReq{ctx: ctx, recs: raws, wires: wires, done: make(chan commitOutcome, 1)}
	sealedRecs, err := n.enqueue(ctx, req)
	if err != nil {
		return err
	}
	out := commitOutcome{sealed: sealedRecs}
	for i, r := range recs {
		s := out.sealed[i]
		r.Seq = s.Seq
		r.CommittedAt = s.CommittedAt
		r.PrevHash = bytes.Clone(s.PrevHash)
		r.Hash = bytes.Clone(s.Hash)
	}
	n.m.commitSeconds.Observe(time.Since(start).Seconds())
	return nil
}

// enqueue hands req to the committer and waits for its outcome.
func (n *Node) enqueue(ctx context.Context, req *commitReq) ([]*record.Record, error) {
	select {
	case n.commitCh <- req:
	case <-ctx.Done():
		return nil, fmt.Errorf("ha: commit: %w", ctx.Err())
	case <-n.closing:
		return nil, fmt.Errorf("ha: commit: %w: node closed", ErrUnavailable)
	}
	// Once queued, wait for the outcome even if ctx ends: the committer
	// drops a request whose ctx ended before it proposed it (answering
	// ctx's error: certainly not committed), and answers every proposed
	// one (raft answers every future; a forward is bounded). So an error
	// here is the truth, and a success is handed back even to a caller
	// that gave up (its SVID is committed; a retry with the same
	// idempotency key gets it, idem.go).
	var out commitOutcome
	select {
	case out = <-req.done:
	case <-n.committerDone:
		select {
		case out = <-req.done:
		default:
			return nil, fmt.Errorf("ha: commit: %w: node closed", ErrUnavailable)
		}
	}
	return out.sealed, out.err
}

// runCommitter is the single group-commit goroutine: it takes whatever is
// queued (up to MaxBatchRecords), proposes it as one raft entry, waits for
// it to apply and fans the results out. While one entry is in flight the
// next batch accumulates in commitCh.
func (n *Node) runCommitter() {
	defer close(n.committerDone)
	var carry *commitReq
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-n.commitCh:
			case <-n.closing:
				n.failQueued()
				return
			}
		}
		fwd := n.forwarding()
		if fwd {
			// A follower keeps a few forwards in flight (each one RPC plus
			// the leader's commit). Take the slot before filling the batch,
			// so that what queued while every slot was busy goes in it.
			select {
			case n.fwdSem <- struct{}{}:
			case <-n.closing:
				n.failBatch([]*commitReq{first})
				n.failQueued()
				return
			}
		}
		batch, count := n.fill(first, &carry)
		if fwd && count < n.cfg.MaxBatchRecords/2 && n.cfg.ForwardLinger > 0 && len(n.fwdSem) > 1 {
			// Other forwards are in flight: linger briefly (bounded) so
			// this one carries more records. A lone caller never waits.
			linger := time.NewTimer(n.cfg.ForwardLinger)
		wait:
			for carry == nil && count < n.cfg.MaxBatchRecords/2 {
				select {
				case r := <-n.commitCh:
					if count+len(r.recs) > n.cfg.MaxBatchRecords {
						carry = r
						break wait
					}
					batch = append(batch, r)
					count += len(r.recs)
				case <-linger.C:
					break wait
				}
			}
			linger.Stop()
		}
		if fwd {
			go func(b []*commitReq) {
				defer func() { <-n.fwdSem }()
				n.commitBatch(b, true)
			}(batch)
			continue
		}
		n.commitBatch(batch, false)
	}
}

// fill takes whatever is queued after first, up to MaxBatchRecords (a
// request is never split: one that does not fit is left in *carry).
func (n *Node) fill(first *commitReq, carry **commitReq) ([]*commitReq, int) {
	batch := []*commitReq{first}
	count := len(first.recs)
	for count < n.cfg.MaxBatchRecords {
		select {
		case r := <-n.commitCh:
			if count+len(r.recs) > n.cfg.MaxBatchRecords {
				*carry = r
				return batch, count
			}
			batch = append(batch, r)
			count += len(r.recs)
		default:
			return batch, count
		}
	}
	return batch, count
}

// failBatch answers a batch taken from the queue at Close.
func (n *Node) failBatch(batch []*commitReq) {
	for _, r := range batch {
		r.done <- commitOutcome{err: fmt.Errorf("ha: commit: %w: node closed", ErrUnavailable)}
	}
}

// failQueued answers requests left in the queue at Close.
func (n *Node) failQueued() {
	for {
		select {
		case r := <-n.commitCh:
			r.done <- commitOutcome{err: fmt.Errorf("ha: commit: %w: node closed", ErrUnavailable)}
		default:
			return
		}
	}
}

// commitBatch proposes batch here or, on a follower (fwd), forwards it.
func (n *Node) commitBatch(batch []*commitReq, fwd bool) {
	// Checked again here, next to the proposal: a batch queued in an
	// earlier leader term must not be proposed before this term's check.
	if err := n.issueGate(context.Background()); err != nil {
		for _, r := range batch {
			r.done <- commitOutcome{err: err}
		}
		return
	}
	live := batch[:0]
	var raws []json.RawMessage
	var wires []wireRecord
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- commitOutcome{err: fmt.Errorf("ha: commit: %w", err)}
			continue
		}
		live = append(live, r)
		raws = append(raws, r.recs...)
		wires = append(wires, r.wires...)
	}
	if len(live) == 0 {
		return
	}
	if h := n.testProposing; h != nil {
		h()
	}
	fail := func(err error) {
		for _, r := range live {
			r.done <- commitOutcome{err: err}
		}
	}
	var sealed []*record.Record
	var err error
	if fwd {
		sealed, err = n.forwardCommit(raws, wires)
	} else {
		sealed, err = n.proposeRecords(raws, wires)
		if err != nil && notProposed(err) {
			sealed, err = n.reroute(raws, wires, err) // transfer.go
		}
	}
	if err != nil {
		fail(err)
		return
	}
	for _, r := range live {
		r.done <- commitOutcome{sealed: sealed[:len(r.recs):len(r.recs)]}
		sealed = sealed[len(r.recs):]
	}
}

// proposeRecords proposes one records entry on this (leader) node and
// waits until it is applied here. Records entries are proposed one at a
// time (recordsMu, held until raft answers, whatever the caller's context),
// and only after a barrier in the current term, so the FSM has applied
// every earlier records entry and the chain head the batch will have is
// known: the entry carries it, and every node compares (DESIGN.md
// "Integrity"). raft answers every future (commit, leadership loss,
// shutdown), so waiting without a context cannot hang.
func (n *Node) proposeRecords(raws []json.RawMessage, wires []wireRecord) ([]*record.Record, error) {
	if len(raws) != len(wires) {
		return nil, fmt.Errorf("ha: commit: %d records but %d decoded", len(raws), len(wires))
	}
	n.recordsMu.Lock()
	defer n.recordsMu.Unlock()
	if err := n.refuseIfDiverged("commit"); err != nil {
		return nil, err
	}
	term, err := n.recordsTerm()
	if err != nil {
		return nil, notProposedError{err} // transfer.go
	}
	now := n.cfg.Clock()
	expect := &recordsExpect{Term: term}
	var lastCommit time.Time
	n.fsm.read(func(s *state) { expect.Seq, expect.Prev, lastCommit = s.seq, bytes.Clone(s.head), s.lastCommit })
	recs := make([]*record.Record, len(wires))
	for i := range wires {
		recs[i] = wires[i].record()
	}
	expect.Head, _ = sealBatch(recs, expect.Seq, expect.Prev, lastCommit, now)
	data, err := encodeRecords(now, expect, raws)
	if err != nil {
		return nil, err
	}
	n.m.batchRecords.Observe(float64(len(raws)))
	n.m.journalEntries.Inc()
	resp, err := n.proposeEntry(data, recs) // transfer.go
	if err != nil {
		return nil, err
	}
	sealed, ok := resp.([]*record.Record)
	if !ok || len(sealed) != len(raws) {
		return nil, fmt.Errorf("ha: commit: unexpected fsm response %T", resp)
	}
	return sealed, nil
}

// recordsTerm returns the current term once this leader has applied every
// entry from earlier terms (a barrier, once per term; recordsMu held).
// Entries after the barrier in this term are this leader's own: records
// ones are proposed under recordsMu, the others do not move the chain.
func (n *Node) recordsTerm() (uint64, error) {
	for {
		term := n.raft.CurrentTerm()
		if term == n.barrierTerm.Load() && n.isLeader() {
			return term, nil
		}
		if err := n.raft.Barrier(n.cfg.ApplyTimeout).Error(); err != nil {
			return 0, n.orWriteFault("commit", err)
		}
		n.passedBarrier(term)
	}
}

// JournalStatus returns the journal position on this node.
func (n *Node) JournalStatus() JournalStatus {
	var js JournalStatus
	n.fsm.read(func(s *state) { js = s.journalStatus() })
	return js
}

// Tail returns copies of up to max unexported records with Seq > afterSeq,
// in journal order.
func (n *Node) Tail(afterSeq uint64, max int) []*record.Record {
	var out []*record.Record
	n.fsm.read(func(s *state) { out = s.tailAfter(afterSeq, max) })
	return out
}
