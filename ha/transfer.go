package ha

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tier0-ca/tier0/ca/record"
)

// Leadership changes lose no records batch (DESIGN.md "Leadership
// transfer"). A leader that stops leading with batches in its committer
// (a planned `cluster transfer-leadership`, a drill, an election) meets
// one of two errors:
//
//   - the batch was not proposed (raft refused it: not the leader, a
//     transfer in progress; or the barrier before it failed). The
//     committer sends it to the new leader (reroute), so its callers,
//     local or forwarded, never see the change.
//   - the batch was proposed and raft answered "leadership lost": the
//     entry may or may not commit under the next leader. The node waits
//     (bounded) until it has applied the log past the entry's index and
//     reads its own log there: the same bytes mean the entry committed
//     (and sealed exactly as the leader computed, or this node would have
//     latched diverged); other bytes mean it did not, and the batch is
//     rerouted. Only when that wait times out does the caller get
//     ErrUnavailable (outcome unknown; a retry with the same idempotency
//     key gets the SVID if it was committed).

// notProposedError marks an error after which raft certainly did not
// append the batch.
type notProposedError struct{ error }

func (e notProposedError) Unwrap() error { return e.error }

func notProposed(err error) bool {
	var np notProposedError
	return errors.As(err, &np)
}

// proposeEntry appends one records entry (data, whose batch seals to
// want) and waits for its outcome (see above). It returns the FSM's
// response, or want when the outcome was read from the log.
func (n *Node) proposeEntry(data []byte, want []*record.Record) (any, error) {
	select {
	case <-n.closing:
		return nil, fmt.Errorf("ha: commit: %w: node closed", ErrUnavailable)
	default:
	}
	fut := n.raft.Apply(data, n.cfg.ApplyTimeout)
	done := make(chan error, 1)
	go func() { done <- fut.Error() }()
	var err error
	select {
	case err = <-done:
	case <-n.raftStopped:
		select {
		case err = <-done:
		default:
			return nil, fmt.Errorf("ha: commit: %w: node closed", ErrUnavailable)
		}
	}
	switch {
	case err == nil:
		if rerr, ok := fut.Response().(error); ok {
			return nil, rerr
		}
		return fut.Response(), nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrEnqueueTimeout):
		return nil, notProposedError{n.orWriteFault("commit", err)}
	case errors.Is(err, raft.ErrLeadershipLost) && fut.Index() > 0:
		committed, rerr := n.outcomeAt(fut.Index(), data)
		switch {
		case rerr != nil:
			return nil, fmt.Errorf("ha: commit: %w: leadership lost, outcome of entry %d unknown: %w", ErrUnavailable, fut.Index(), rerr)
		case committed:
			n.log.Info("ha: commit: leadership lost, but the entry committed", "index", fut.Index(), "records", len(want))
			return want, nil
		default:
			return nil, notProposedError{fmt.Errorf("ha: commit: entry %d was not committed: %w", fut.Index(), ErrUnavailable)}
		}
	}
	return nil, n.orWriteFault("commit", err)
}

// outcomeAt waits (bounded) until this node has applied index and reports
// whether its log holds data there.
func (n *Node) outcomeAt(index uint64, data []byte) (bool, error) {
	deadline := time.Now().Add(2 * n.cfg.ApplyTimeout)
	for n.raft.AppliedIndex() < index {
		if time.Now().After(deadline) {
			return false, fmt.Errorf("log applied up to %d only", n.raft.AppliedIndex())
		}
		select {
		case <-n.closing:
			return false, errors.New("node closed")
		case <-time.After(10 * time.Millisecond): // polling raft's applied index
		}
	}
	var l raft.Log
	if err := n.logs.GetLog(index, &l); err != nil {
		return false, err // compacted into a snapshot already: unknown
	}
	return bytes.Equal(l.Data, data), nil
}

// reroute sends a batch that was not proposed to the leader there is
// now: forwarded when another node leads, proposed again when this one
// still does (a transfer that failed, or a re-election), until it is
// proposed or 2*ApplyTimeout has passed.
func (n *Node) reroute(raws []json.RawMessage, wires []wireRecord, cause error) ([]*record.Record, error) {
	deadline := time.Now().Add(2 * n.cfg.ApplyTimeout)
	n.m.reroutes.Inc()
	n.log.Debug("ha: commit: leadership moved before the batch was proposed; sending it to the new leader", "records", len(raws), "cause", cause)
	err := cause
	for time.Now().Before(deadline) {
		changed := n.leadershipChange()
		if n.forwarding() {
			return n.forwardCommit(raws, wires)
		}
		if n.isLeader() {
			var sealed []*record.Record
			sealed, err = n.proposeRecords(raws, wires)
			if err == nil || !notProposed(err) {
				return sealed, err
			}
		}
		select {
		case <-n.closing:
			return nil, fmt.Errorf("ha: commit: %w: node closed", ErrUnavailable)
		case <-changed:
		case <-time.After(20 * time.Millisecond): // a transfer in progress: poll
		}
	}
	return nil, err
}
