package ha

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// Sentinel errors. Callers test them with errors.Is; api/ maps them to
// status codes.
var (
	// ErrNotLeader: this node is not the leader; the write must be sent to
	// the leader (later: forwarded automatically).
	ErrNotLeader = errors.New("ha: not the leader")
	// ErrUnavailable: no quorum, raft shut down, leadership lost or an
	// apply timed out. Retryable; the outcome of the write is unknown.
	ErrUnavailable = errors.New("ha: unavailable")
	// ErrNotFound: no such registration entry.
	ErrNotFound = errors.New("ha: not found")
	// ErrExists: an entry with the same agent and SPIFFE ID (or the same
	// token hash) already exists.
	ErrExists = errors.New("ha: already exists")
	// ErrTokenInvalid: the join token is unknown, used or expired. One
	// error for all three so that callers cannot probe tokens.
	ErrTokenInvalid = errors.New("ha: join token invalid")
	// ErrInvalid: the request is malformed (missing field, bad hash, ...).
	ErrInvalid = errors.New("ha: invalid argument")
)

// translate maps hashicorp/raft errors to this package's sentinels. It is
// the only place that knows raft's error values.
func translate(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader):
		return fmt.Errorf("ha: %s: %w", op, ErrNotLeader)
	default:
		// raft.ErrLeadershipLost, ErrRaftShutdown, ErrEnqueueTimeout,
		// ErrLeadershipTransferInProgress, ErrAbortedByRestore, ...: all
		// mean "no answer now, outcome unknown, retry".
		return fmt.Errorf("ha: %s: %w: %w", op, ErrUnavailable, err)
	}
}
