package ha

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Faults that stop this node's writes until they are gone. Both wrap
// ErrUnavailable, so api answers Unavailable; Health returns them for
// readiness.
var (
	// ErrDiverged: the FSM met a committed raft entry it cannot apply (an
	// unknown non-ignorable type, a payload that does not decode, a digest
	// or chain-head mismatch). It latched: it applies no later entry,
	// takes no snapshot, and every write is refused, so the node never
	// issues from a state that skipped a command. Only replacing the state
	// (a snapshot from the leader, or wiping the node's raft directory;
	// docs/OPERATIONS.md) clears it. The error names the raft index and the
	// command type.
	ErrDiverged = fmt.Errorf("ha: diverged: %w", ErrUnavailable)
	// ErrJournalWrite: the raft log store could not write (no space left,
	// an I/O or fsync error). Writes resume by themselves once a write
	// succeeds again (Health reports the fault until writes have succeeded
	// for 5 s); the error names the cause.
	ErrJournalWrite = fmt.Errorf("ha: journal write failed: %w", ErrUnavailable)
)

// divergedError is the latched divergence.
type divergedError struct {
	index  uint64
	typ    byte
	reason string
}

func (e *divergedError) Error() string {
	return fmt.Sprintf("ha: diverged at raft index %d (command type 0x%02x): %s; this node stopped applying the raft log and refuses writes until it is repaired",
		e.index, e.typ, e.reason)
}

func (e *divergedError) Unwrap() error { return ErrDiverged }

// journalWriteError is a failed log store write with its cause.
type journalWriteError struct{ cause error }

func (e *journalWriteError) Error() string   { return "ha: journal write failed: " + e.cause.Error() }
func (e *journalWriteError) Unwrap() []error { return []error{ErrJournalWrite, e.cause} }

// Health reports whether this node can take writes: nil, or an error
// wrapping ErrUnavailable that says why: ErrDiverged (naming the raft index
// and command type) or ErrJournalWrite (naming the cause; it clears by
// itself). A readiness check calls it; it does not block.
func (n *Node) Health() error {
	if d := n.fsm.divergence(); d != nil {
		return d
	}
	return n.logs.fault()
}

// refuseIfDiverged is the write guard: nil, or the latched divergence
// wrapped for op.
func (n *Node) refuseIfDiverged(op string) error {
	if d := n.fsm.divergence(); d != nil {
		return fmt.Errorf("ha: %s: %w", op, d)
	}
	return nil
}

// orWriteFault replaces a raft error with the log store's write fault
// while there is one (Health's): a leader whose log write fails steps down,
// so its callers (and the next ones, until it is elected again and for a
// while after: a request that met the candidate is answered only once the
// new leader's first write succeeded) would otherwise be told "not the
// leader", which is not why their write failed.
func (n *Node) orWriteFault(op string, err error) error {
	if errors.Is(err, ErrJournalWrite) {
		return fmt.Errorf("ha: %s: %w", op, err)
	}
	if fault := n.logs.fault(); fault != nil {
		return fmt.Errorf("ha: %s: %w", op, fault)
	}
	return translate(op, err)
}

// transferIfDiverged hands leadership away from a diverged leader (best
// effort, at most once a minute): it refuses every write, so the cluster
// should be led by a node that applies the log. A single node has no one
// to hand it to and stays not ready.
func (n *Node) transferIfDiverged() {
	if n.fsm.divergence() == nil || !n.isLeader() {
		return
	}
	n.leaderMu.Lock()
	recent := time.Since(n.lastDivergedTransfer) < time.Minute
	if !recent {
		n.lastDivergedTransfer = time.Now()
	}
	n.leaderMu.Unlock()
	if recent || n.voters() < 2 {
		return
	}
	go func() {
		err := n.raft.LeadershipTransfer().Error()
		n.log.Warn("ha: diverged leader: transferring leadership to a node that applies the log", "err", err)
	}()
}

// voters counts the voting members in the current configuration.
func (n *Node) voters() int {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	c := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			c++
		}
	}
	return c
}
