package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage/internal/core"
)

// Lineage returns the lineage that claimed the store; ok is false while
// it is unclaimed.
func (s *Store) Lineage(ctx context.Context) (_ record.Lineage, _ bool, err error) {
	defer markUnavailable(&err)
	l, ok, err := readLineage(ctx, s.pool)
	if err != nil {
		return l, false, fmt.Errorf("postgres: lineage: %w", err)
	}
	return l, ok, nil
}

// ClaimLineage claims an unclaimed store for l (by node `by` at `at`) and
// returns the store's lineage after the call: l, or the lineage that had
// claimed it. Of two racing claims exactly one wins: the row has a fixed
// primary key, and INSERT ... ON CONFLICT DO NOTHING waits for a
// concurrent insert to commit before deciding.
func (s *Store) ClaimLineage(ctx context.Context, l record.Lineage, by string, at time.Time) (_ record.Lineage, err error) {
	defer markUnavailable(&err)
	if err := core.CheckClaim("postgres", l, by, at); err != nil {
		return record.Lineage{}, err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return record.Lineage{}, fmt.Errorf("postgres: claim lineage: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit
	if _, err := tx.Exec(ctx, claimSQL,
		l.ClusterID, l.ID, int64(l.BaseSeq), l.BaseHash, l.Parent, record.Truncate(l.CreatedAt), record.Truncate(at), by); err != nil {
		return record.Lineage{}, fmt.Errorf("postgres: claim lineage: %w", err)
	}
	got, ok, err := readLineage(ctx, tx)
	if err == nil && !ok {
		err = errors.New("no row after insert")
	}
	if err != nil {
		return record.Lineage{}, fmt.Errorf("postgres: claim lineage: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return record.Lineage{}, fmt.Errorf("postgres: claim lineage: commit: %w", err)
	}
	return got, nil
}

// claimSQL inserts the lineage row unless one exists.
const claimSQL = "INSERT INTO store_lineage (id, " + core.LineageColumns + ", claimed_at, claimed_by) VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING"

type queryer interface {
	QueryRow(ctx context.Context, q string, args ...any) pgx.Row
}

func readLineage(ctx context.Context, q queryer) (record.Lineage, bool, error) {
	var l record.Lineage
	var base int64
	err := q.QueryRow(ctx, "SELECT "+core.LineageColumns+" FROM store_lineage WHERE id = 1").
		Scan(&l.ClusterID, &l.ID, &base, &l.BaseHash, &l.Parent, &l.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return record.Lineage{}, false, nil
	}
	if err != nil {
		return record.Lineage{}, false, err
	}
	l.BaseSeq, l.CreatedAt = uint64(base), l.CreatedAt.UTC()
	return l, true, nil
}
