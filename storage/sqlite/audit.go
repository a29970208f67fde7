package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage/internal/core"
)

// FirstSeq returns the lowest stored seq (0 when empty): above 1 after a prune.
func (s *Store) FirstSeq(ctx context.Context) (_ uint64, err error) {
	defer markUnavailable(&err)
	var first int64
	if err := s.r.QueryRowContext(ctx, "SELECT coalesce(min(seq), 0) FROM issuance_records").Scan(&first); err != nil {
		return 0, fmt.Errorf("sqlite: first seq: %w", err)
	}
	return uint64(first), nil
}

// AppendCheckpoints stores checkpoints; one already stored at the same seq is
// kept as is (idempotent).
func (s *Store) AppendCheckpoints(ctx context.Context, cps []record.Checkpoint) (err error) {
	defer markUnavailable(&err)
	if err := core.CheckCheckpoints("sqlite", cps); err != nil {
		return err
	}
	if len(cps) == 0 {
		return nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: append checkpoints: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	for _, c := range cps {
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_checkpoints (seq, head, signed_at, node_id, cert_der, signature, prev_seq)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING`,
			int64(c.Seq), c.Head, micros(c.SignedAt), c.NodeID, c.CertDER, c.Signature, core.PrevArg(c)); err != nil {
			return fmt.Errorf("sqlite: append checkpoints: seq %d: %w", c.Seq, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: append checkpoints: commit: %w", err)
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
	rows, err := s.r.QueryContext(ctx, `SELECT seq, head, signed_at, node_id, cert_der, signature, prev_seq
		FROM audit_checkpoints WHERE seq BETWEEN ? AND ? ORDER BY seq`, core.Clamp(from), core.Clamp(to))
	if err != nil {
		return nil, fmt.Errorf("sqlite: checkpoints: %w", err)
	}
	defer rows.Close()
	out, err := core.Collect(rows, func() (record.Checkpoint, error) {
		var c record.Checkpoint
		var seq, at int64
		var prev *int64
		if err := rows.Scan(&seq, &c.Head, &at, &c.NodeID, &c.CertDER, &c.Signature, &prev); err != nil {
			return record.Checkpoint{}, err
		}
		c.Seq, c.SignedAt, c.Prev = uint64(seq), fromMicros(at), core.PrevFrom(prev)
		return c, nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: checkpoints: %w", err)
	}
	return out, nil
}

// AppendDecisions stores authorization decisions in one transaction,
// numbered and chained after the stored head (core.ChainDecisions).
func (s *Store) AppendDecisions(ctx context.Context, ds []core.Decision) (err error) {
	defer markUnavailable(&err)
	if len(ds) == 0 {
		return nil
	}
	ds = slices.Clone(ds)
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: append decisions: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	var last int64
	var head []byte
	err = tx.QueryRowContext(ctx, "SELECT chain_seq, hash FROM authz_decisions WHERE chain_seq IS NOT NULL ORDER BY chain_seq DESC LIMIT 1").Scan(&last, &head)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: append decisions: chain head: %w", err)
	}
	core.ChainDecisions(ds, uint64(last), head)
	st, err := tx.PrepareContext(ctx, `INSERT INTO authz_decisions (decided_at, node_id, caller, requested, allowed, reason, code, chain_seq, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("sqlite: append decisions: %w", err)
	}
	defer st.Close()
	for _, d := range ds {
		if _, err := st.ExecContext(ctx, micros(d.At), d.NodeID, d.Caller, d.Requested, d.Allowed, d.Reason, d.Code, int64(d.Seq), d.PrevHash, d.Hash); err != nil {
			return fmt.Errorf("sqlite: append decisions: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: append decisions: commit: %w", err)
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
	q, args := core.DecisionSQL(f, core.Question, func(t time.Time) any { return t.UnixMicro() })
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: query decisions: %w", err)
	}
	defer rows.Close()
	out, err := core.Collect(rows, func() (core.Decision, error) {
		var d core.Decision
		var at int64
		if err := rows.Scan(&d.ID, &at, &d.NodeID, &d.Caller, &d.Requested, &d.Allowed, &d.Reason, &d.Code); err != nil {
			return core.Decision{}, err
		}
		d.At = fromMicros(at)
		return d, nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: query decisions: %w", err)
	}
	return out, nil
}

// Prune: see the Postgres store.
func (s *Store) Prune(ctx context.Context, before time.Time) (_ core.PruneResult, err error) {
	defer markUnavailable(&err)
	var res core.PruneResult
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("sqlite: prune: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	var cp int64
	err = tx.QueryRowContext(ctx, `SELECT coalesce(max(c.seq), 0) FROM audit_checkpoints c
		JOIN issuance_records r ON r.seq = c.seq AND r.hash = c.head
		WHERE r.committed_at < ?`, micros(before)).Scan(&cp)
	if err != nil {
		return res, fmt.Errorf("sqlite: prune: find checkpoint: %w", err)
	}
	if cp > 0 {
		r, err := tx.ExecContext(ctx, "DELETE FROM issuance_records WHERE seq < ?", cp)
		if err != nil {
			return res, fmt.Errorf("sqlite: prune: records: %w", err)
		}
		res.Records, _ = r.RowsAffected()
		if _, err := tx.ExecContext(ctx, "DELETE FROM audit_checkpoints WHERE seq < ?", cp); err != nil {
			return res, fmt.Errorf("sqlite: prune: checkpoints: %w", err)
		}
		res.Checkpoint = uint64(cp)
	}
	// Decisions: unchained ones before T, chained ones before the newest
	// decision checkpoint made before T; that checkpoint and its decision
	// stay (the chain verifies from it), the older checkpoints go.
	var dcp int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(c.seq), 0) FROM decision_checkpoints c
		JOIN authz_decisions d ON d.chain_seq = c.seq WHERE d.decided_at < ?`, micros(before)).Scan(&dcp); err != nil {
		return res, fmt.Errorf("sqlite: prune: decision checkpoints: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM decision_checkpoints WHERE seq < ?", dcp); err != nil {
		return res, fmt.Errorf("sqlite: prune: decision checkpoints: %w", err)
	}
	r, err := tx.ExecContext(ctx, "DELETE FROM authz_decisions WHERE decided_at < ? AND (chain_seq IS NULL OR chain_seq < ?)", micros(before), dcp)
	if err != nil {
		return res, fmt.Errorf("sqlite: prune: decisions: %w", err)
	}
	res.Decisions, _ = r.RowsAffected()
	if err := tx.Commit(); err != nil {
		return res, fmt.Errorf("sqlite: prune: commit: %w", err)
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
	if err := s.r.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM schema_version").Scan(&db); err != nil {
		return 0, 0, fmt.Errorf("sqlite: schema version: %w", err)
	}
	return db, len(ms), nil
}
