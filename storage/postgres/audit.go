package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage/internal/core"
)

// FirstSeq returns the lowest stored seq (0 when empty): above 1 after a prune.
func (s *Store) FirstSeq(ctx context.Context) (_ uint64, err error) {
	defer markUnavailable(&err)
	var first int64
	if err := s.pool.QueryRow(ctx, "SELECT coalesce(min(seq), 0) FROM issuance_records").Scan(&first); err != nil {
		return 0, fmt.Errorf("postgres: first seq: %w", err)
	}
	return uint64(first), nil
}

// AppendCheckpoints stores checkpoints; one already stored at the same seq is
// kept as is (idempotent: an exporter may resend after a crash).
func (s *Store) AppendCheckpoints(ctx context.Context, cps []record.Checkpoint) (err error) {
	defer markUnavailable(&err)
	if err := core.CheckCheckpoints("postgres", cps); err != nil {
		return err
	}
	if len(cps) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, c := range cps {
		b.Queue(`INSERT INTO audit_checkpoints (seq, head, signed_at, node_id, cert_der, signature, prev_seq)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (seq) DO NOTHING`,
			int64(c.Seq), c.Head, record.Truncate(c.SignedAt), c.NodeID, c.CertDER, c.Signature, core.PrevArg(c))
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("postgres: append checkpoints: %w", err)
	}
	return nil
}

// Checkpoints returns the checkpoints with from <= seq <= to (to == 0: no
// upper bound), in seq order.
func (s *Store) Checkpoints(ctx context.Context, from, to uint64) (_ []record.Checkpoint, err error) {
	defer markUnavailable(&err)
	if to == 0 {
		to = 1<<63 - 1
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, head, signed_at, node_id, cert_der, signature, prev_seq
		FROM audit_checkpoints WHERE seq BETWEEN $1 AND $2 ORDER BY seq`, core.Clamp(from), core.Clamp(to))
	if err != nil {
		return nil, fmt.Errorf("postgres: checkpoints: %w", err)
	}
	defer rows.Close()
	out, err := core.Collect(rows, func() (record.Checkpoint, error) {
		var c record.Checkpoint
		var seq int64
		var prev *int64
		if err := rows.Scan(&seq, &c.Head, &c.SignedAt, &c.NodeID, &c.CertDER, &c.Signature, &prev); err != nil {
			return record.Checkpoint{}, err
		}
		c.Seq, c.SignedAt, c.Prev = uint64(seq), c.SignedAt.UTC(), core.PrevFrom(prev)
		return c, nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: checkpoints: %w", err)
	}
	return out, nil
}

// decisionLock is the transaction-level advisory lock that serializes
// the decision chain's appends from every node.
const decisionLock = 0x7431_0dec

// AppendDecisions stores authorization decisions with COPY, numbered and
// chained after the stored head (core.ChainDecisions) under an advisory
// lock, so that nodes writing at once extend one chain.
func (s *Store) AppendDecisions(ctx context.Context, ds []core.Decision) (err error) {
	defer markUnavailable(&err)
	if len(ds) == 0 {
		return nil
	}
	ds = slices.Clone(ds)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: append decisions: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(decisionLock)); err != nil {
		return fmt.Errorf("postgres: append decisions: lock: %w", err)
	}
	var last int64
	var head []byte
	err = tx.QueryRow(ctx, "SELECT chain_seq, hash FROM authz_decisions WHERE chain_seq IS NOT NULL ORDER BY chain_seq DESC LIMIT 1").Scan(&last, &head)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("postgres: append decisions: chain head: %w", err)
	}
	core.ChainDecisions(ds, uint64(last), head)
	src := pgx.CopyFromSlice(len(ds), func(i int) ([]any, error) {
		d := ds[i]
		return []any{d.At, d.NodeID, d.Caller, d.Requested, d.Allowed, d.Reason, d.Code, int64(d.Seq), d.PrevHash, d.Hash}, nil
	})
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"authz_decisions"},
		[]string{"decided_at", "node_id", "caller", "requested", "allowed", "reason", "code", "chain_seq", "prev_hash", "hash"}, src); err != nil {
		return fmt.Errorf("postgres: append decisions: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: append decisions: commit: %w", err)
	}
	return nil
}

// QueryDecisions returns matching decisions, newest first.
func (s *Store) QueryDecisions(ctx context.Context, f core.DecisionFilter) (_ []core.Decision, err error) {
	defer markUnavailable(&err)
	f, err = core.NormalizeDecisions(f)
	if err != nil {
		return nil, err
	}
	q, args := core.DecisionSQL(f, core.Dollar, func(t time.Time) any { return t })
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: query decisions: %w", err)
	}
	defer rows.Close()
	out, err := core.Collect(rows, func() (core.Decision, error) {
		var d core.Decision
		if err := rows.Scan(&d.ID, &d.At, &d.NodeID, &d.Caller, &d.Requested, &d.Allowed, &d.Reason, &d.Code); err != nil {
			return core.Decision{}, err
		}
		d.At = d.At.UTC()
		return d, nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: query decisions: %w", err)
	}
	return out, nil
}

// Prune removes the records before the last checkpoint whose record was
// committed before `before` (that checkpoint and its record stay:
// verification starts from there), older checkpoints, and decisions made
// before `before`.
func (s *Store) Prune(ctx context.Context, before time.Time) (_ core.PruneResult, err error) {
	defer markUnavailable(&err)
	var res core.PruneResult
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("postgres: prune: begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit
	if _, err := tx.Exec(ctx, "LOCK TABLE issuance_records IN SHARE ROW EXCLUSIVE MODE"); err != nil {
		return res, fmt.Errorf("postgres: prune: lock: %w", err)
	}
	var cp int64
	err = tx.QueryRow(ctx, `SELECT coalesce(max(c.seq), 0) FROM audit_checkpoints c
		JOIN issuance_records r ON r.seq = c.seq AND r.hash = c.head
		WHERE r.committed_at < $1`, before).Scan(&cp)
	if err != nil {
		return res, fmt.Errorf("postgres: prune: find checkpoint: %w", err)
	}
	if cp > 0 {
		tag, err := tx.Exec(ctx, "DELETE FROM issuance_records WHERE seq < $1", cp)
		if err != nil {
			return res, fmt.Errorf("postgres: prune: records: %w", err)
		}
		res.Records = tag.RowsAffected()
		if _, err := tx.Exec(ctx, "DELETE FROM audit_checkpoints WHERE seq < $1", cp); err != nil {
			return res, fmt.Errorf("postgres: prune: checkpoints: %w", err)
		}
		res.Checkpoint = uint64(cp)
	}
	// Decisions: see the SQLite store.
	var dcp int64
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(c.seq), 0) FROM decision_checkpoints c
		JOIN authz_decisions d ON d.chain_seq = c.seq WHERE d.decided_at < $1`, before).Scan(&dcp); err != nil {
		return res, fmt.Errorf("postgres: prune: decision checkpoints: %w", err)
	}
	if _, err := tx.Exec(ctx, "DELETE FROM decision_checkpoints WHERE seq < $1", dcp); err != nil {
		return res, fmt.Errorf("postgres: prune: decision checkpoints: %w", err)
	}
	tag, err := tx.Exec(ctx, "DELETE FROM authz_decisions WHERE decided_at < $1 AND (chain_seq IS NULL OR chain_seq < $2)", before, dcp)
	if err != nil {
		return res, fmt.Errorf("postgres: prune: decisions: %w", err)
	}
	res.Decisions = tag.RowsAffected()
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("postgres: prune: commit: %w", err)
	}
	return res, nil
}

// SchemaVersion returns the applied and the embedded schema versions.
func (s *Store) SchemaVersion(ctx context.Context) (db, binary int, err error) {
	defer markUnavailable(&err)
	ms, err := core.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		return 0, 0, err
	}
	if err := s.pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_version").Scan(&db); err != nil {
		return 0, 0, fmt.Errorf("postgres: schema version: %w", err)
	}
	return db, len(ms), nil
}
