package sqlite

import (
	"context"
	"fmt"

	"github.com/tier0-ca/tier0/storage/internal/core"
)

// SwapTreeNote implements storage.TreeCosigner.
func (s *Store) SwapTreeNote(ctx context.Context, size int64, old, updated []byte) (_ bool, err error) {
	defer markUnavailable(&err)
	if err := core.CheckNoteSwap("sqlite", size, old, updated); err != nil {
		return false, err
	}
	res, err := s.w.ExecContext(ctx, "UPDATE tree_checkpoints SET note = ? WHERE size = ? AND note = ?", updated, size, old)
	if err != nil {
		return false, fmt.Errorf("sqlite: swap tree note %d: %w", size, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlite: swap tree note %d: %w", size, err)
	}
	return n == 1, nil
}
