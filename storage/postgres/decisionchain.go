package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage/internal/core"
)

// DecisionHead returns the decision chain's last seq and hash (0, nil:
// no chained decision).
func (s *Store) DecisionHead(ctx context.Context) (_ uint64, _ []byte, err error) {
	defer markUnavailable(&err)
	var seq int64
	var hash []byte
	err = s.pool.QueryRow(ctx, "SELECT chain_seq, hash FROM authz_decisions WHERE chain_seq IS NOT NULL ORDER BY chain_seq DESC LIMIT 1").Scan(&seq, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("postgres: decision head: %w", err)
	}
	return uint64(seq), hash, nil
}

// DecisionChain returns at most limit chained decisions from chain seq
// from on, in chain order.
func (s *Store) DecisionChain(ctx context.Context, from uint64, limit int) (_ []core.Decision, err error) {
	defer markUnavailable(&err)
	rows, err := s.pool.Query(ctx, core.DecisionChainSQL(core.Dollar), core.Clamp(from), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: decision chain: %w", err)
	}
	defer rows.Close()
	out, err := core.Collect(rows, func() (core.Decision, error) {
		var d core.Decision
		var seq int64
		if err := rows.Scan(&d.ID, &d.At, &d.NodeID, &d.Caller, &d.Requested, &d.Allowed, &d.Reason, &d.Code, &seq, &d.PrevHash, &d.Hash); err != nil {
			return core.Decision{}, err
		}
		d.At, d.Seq = d.At.UTC(), uint64(seq)
		return d, nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: decision chain: %w", err)
	}
	return out, nil
}

// AppendDecisionCheckpoint stores a signed decision checkpoint (one at the
// same seq is kept).
func (s *Store) AppendDecisionCheckpoint(ctx context.Context, c record.DecisionCheckpoint) (err error) {
	defer markUnavailable(&err)
	if err := core.CheckDecisionCheckpoint("postgres", c); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO decision_checkpoints (seq, head, signed_at, node_id, cert_der, signature, prev_seq)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (seq) DO NOTHING`,
		int64(c.Seq), c.Head, record.Truncate(c.SignedAt), c.NodeID, c.CertDER, c.Signature, int64(c.Prev)); err != nil {
		return fmt.Errorf("postgres: append decision checkpoint: %w", err)
	}
	return nil
}

// DecisionCheckpoints returns every decision checkpoint, in seq order.
func (s *Store) DecisionCheckpoints(ctx context.Context) (_ []record.DecisionCheckpoint, err error) {
	defer markUnavailable(&err)
	rows, err := s.pool.Query(ctx, `SELECT seq, head, signed_at, node_id, cert_der, signature, prev_seq FROM decision_checkpoints ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("postgres: decision checkpoints: %w", err)
	}
	defer rows.Close()
	out, err := core.Collect(rows, func() (record.DecisionCheckpoint, error) {
		var c record.DecisionCheckpoint
		var seq, prev int64
		if err := rows.Scan(&seq, &c.Head, &c.SignedAt, &c.NodeID, &c.CertDER, &c.Signature, &prev); err != nil {
			return record.DecisionCheckpoint{}, err
		}
		c.Seq, c.SignedAt, c.Prev = uint64(seq), c.SignedAt.UTC(), uint64(prev)
		return c, nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: decision checkpoints: %w", err)
	}
	return out, nil
}
