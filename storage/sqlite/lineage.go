package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage/internal/core"
)

// Lineage returns the lineage that claimed the store; ok is false while
// it is unclaimed.
func (s *Store) Lineage(ctx context.Context) (_ record.Lineage, _ bool, err error) {
	defer markUnavailable(&err)
	l, ok, err := readLineage(ctx, s.r)
	if err != nil {
		return l, false, fmt.Errorf("sqlite: lineage: %w", err)
	}
	return l, ok, nil
}

// ClaimLineage claims an unclaimed store for l (by node `by` at `at`) and
// returns the store's lineage after the call: l, or the lineage that had
// claimed it. Of two racing claims exactly one wins (one row, written
// under the database write lock).
func (s *Store) ClaimLineage(ctx context.Context, l record.Lineage, by string, at time.Time) (_ record.Lineage, err error) {
	defer markUnavailable(&err)
	if err := core.CheckClaim("sqlite", l, by, at); err != nil {
		return record.Lineage{}, err
	}
	tx, err := s.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE
	if err != nil {
		return record.Lineage{}, fmt.Errorf("sqlite: claim lineage: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if _, err := tx.ExecContext(ctx, claimSQL,
		l.ClusterID, l.ID, int64(l.BaseSeq), l.BaseHash, l.Parent, micros(l.CreatedAt), micros(at), by); err != nil {
		return record.Lineage{}, fmt.Errorf("sqlite: claim lineage: %w", err)
	}
	got, ok, err := readLineage(ctx, tx)
	if err == nil && !ok {
		err = errors.New("no row after insert")
	}
	if err != nil {
		return record.Lineage{}, fmt.Errorf("sqlite: claim lineage: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return record.Lineage{}, fmt.Errorf("sqlite: claim lineage: commit: %w", err)
	}
	return got, nil
}

// claimSQL inserts the lineage row unless one exists.
const claimSQL = "INSERT INTO store_lineage (id, " + core.LineageColumns + ", claimed_at, claimed_by) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"

type queryer interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

func readLineage(ctx context.Context, q queryer) (record.Lineage, bool, error) {
	var l record.Lineage
	var base, created int64
	err := q.QueryRowContext(ctx, "SELECT "+core.LineageColumns+" FROM store_lineage WHERE id = 1").
		Scan(&l.ClusterID, &l.ID, &base, &l.BaseHash, &l.Parent, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return record.Lineage{}, false, nil
	}
	if err != nil {
		return record.Lineage{}, false, err
	}
	l.BaseSeq, l.CreatedAt = uint64(base), fromMicros(created)
	return l, true, nil
}
