package sqlite

import (
	"context"
	"fmt"

	"github.com/tier0-ca/tier0/storage/internal/core"
)

// AppendTreeCheckpoint stores a signed tree checkpoint; one already stored
// at the same size is kept as is.
func (s *Store) AppendTreeCheckpoint(ctx context.Context, c core.TreeCheckpoint) (err error) {
	defer markUnavailable(&err)
	if c.Size <= 0 || len(c.Note) == 0 || len(c.CertDER) == 0 {
		return fmt.Errorf("sqlite: append tree checkpoint: size, note and certificate are required")
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO tree_checkpoints (size, note, cert_der, signed_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (size) DO NOTHING`, c.Size, c.Note, c.CertDER, micros(c.SignedAt)); err != nil {
		return fmt.Errorf("sqlite: append tree checkpoint %d: %w", c.Size, err)
	}
	return nil
}

// TreeCheckpoints returns the stored tree checkpoints, smallest first.
func (s *Store) TreeCheckpoints(ctx context.Context) (_ []core.TreeCheckpoint, err error) {
	defer markUnavailable(&err)
	rows, err := s.r.QueryContext(ctx, "SELECT size, note, cert_der, signed_at FROM tree_checkpoints ORDER BY size")
	if err != nil {
		return nil, fmt.Errorf("sqlite: tree checkpoints: %w", err)
	}
	defer rows.Close()
	out, err := core.Collect(rows, func() (core.TreeCheckpoint, error) {
		var c core.TreeCheckpoint
		var at int64
		if err := rows.Scan(&c.Size, &c.Note, &c.CertDER, &at); err != nil {
			return c, err
		}
		c.SignedAt = fromMicros(at)
		return c, nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: tree checkpoints: %w", err)
	}
	return out, nil
}
