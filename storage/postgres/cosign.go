package postgres

import (
	"context"
	"fmt"

	"github.com/tier0-ca/tier0/storage/internal/core"
)

// SwapTreeNote implements storage.TreeCosigner.
func (s *Store) SwapTreeNote(ctx context.Context, size int64, old, updated []byte) (_ bool, err error) {
	defer markUnavailable(&err)
	if err := core.CheckNoteSwap("postgres", size, old, updated); err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, "UPDATE tree_checkpoints SET note = $1 WHERE size = $2 AND note = $3", updated, size, old)
	if err != nil {
		return false, fmt.Errorf("postgres: swap tree note %d: %w", size, err)
	}
	return tag.RowsAffected() == 1, nil
}
