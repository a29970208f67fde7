package postgres

import (
	"context"
	"fmt"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage/internal/core"
)

// AppendTreeCheckpoint stores a signed tree checkpoint; one already stored
// at the same size is kept as is.
func (s *Store) AppendTreeCheckpoint(ctx context.Context, c core.TreeCheckpoint) (err error) {
	defer markUnavailable(&err)
	if c.Size <= 0 || len(c.Note) == 0 || len(c.CertDER) == 0 {
		return fmt.Errorf("postgres: append tree checkpoint: size, note and certificate are required")
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO tree_checkpoints (size, note, cert_der, signed_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (size) DO NOTHING`, c.Size, c.Note, c.CertDER, record.Truncate(c.SignedAt)); err != nil {
		return fmt.Errorf("postgres: append tree checkpoint %d: %w", c.Size, err)
	}
	return nil
}

// TreeCheckpoints returns the stored tree checkpoints, smallest first.
func (s *Store) TreeCheckpoints(ctx context.Context) (_ []core.TreeCheckpoint, err error) {
	defer markUnavailable(&err)
	rows, err := s.pool.Query(ctx, "SELECT size, note, cert_der, signed_at FROM tree_checkpoints ORDER BY size")
	if err != nil {
		return nil, fmt.Errorf("postgres: tree checkpoints: %w", err)
	}
	defer rows.Close()
	var out []core.TreeCheckpoint
	for rows.Next() {
		var c core.TreeCheckpoint
		if err := rows.Scan(&c.Size, &c.Note, &c.CertDER, &c.SignedAt); err != nil {
			return nil, fmt.Errorf("postgres: tree checkpoints: %w", err)
		}
		c.SignedAt = c.SignedAt.UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: tree checkpoints: %w", err)
	}
	return out, nil
}
