package storage

import (
	"context"
	"fmt"

	"github.com/tier0-ca/tier0/storage/internal/core"
)

// TreeCheckpoint is a signed Merkle tree checkpoint (see core).
type TreeCheckpoint = core.TreeCheckpoint

// TreeStore keeps signed Merkle tree checkpoints (migration 0007). Both
// backends implement it.
type TreeStore interface {
	AppendTreeCheckpoint(ctx context.Context, c TreeCheckpoint) error
	TreeCheckpoints(ctx context.Context) ([]TreeCheckpoint, error)
}

// AppendTreeCheckpoint implements TreeStore once connected.
func (l *Lazy) AppendTreeCheckpoint(ctx context.Context, c TreeCheckpoint) error {
	s, err := l.store()
	if err != nil {
		return err
	}
	t, ok := s.(TreeStore)
	if !ok {
		return fmt.Errorf("storage: %T keeps no tree checkpoints", s)
	}
	return t.AppendTreeCheckpoint(ctx, c)
}

// TreeCheckpoints implements TreeStore once connected.
func (l *Lazy) TreeCheckpoints(ctx context.Context) ([]TreeCheckpoint, error) {
	s, err := l.store()
	if err != nil {
		return nil, err
	}
	t, ok := s.(TreeStore)
	if !ok {
		return nil, fmt.Errorf("storage: %T keeps no tree checkpoints", s)
	}
	return t.TreeCheckpoints(ctx)
}
