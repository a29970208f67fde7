// Package postgres is the production record store: Postgres through
// pgx/v5. Append bulk-loads a batch that is entirely new (the exporter's
// common case) with COPY straight into issuance_records; a resent batch
// that overlaps stored records goes through a temporary staging table and
// one INSERT ... SELECT ... ON CONFLICT DO NOTHING.
package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/internal/redact"
	"github.com/tier0-ca/tier0/storage/internal/core"
)

// Config configures a Store.
type Config struct {
	// DSN is a postgres:// URL or key=value string. Parameters pgx does not
	// know (search_path, application_name, ...) are sent as run-time
	// parameters.
	DSN string
	// SearchPath, when set, overrides the search_path run-time parameter:
	// the schema that holds the tables.
	SearchPath string
	// MaxConns bounds the pool; default pgxpool's (max(4, GOMAXPROCS)).
	MaxConns int32
	// ConnectTimeout bounds each connection attempt; default 10s.
	ConnectTimeout time.Duration
}

// Store is the Postgres record store. It implements storage.Store.
type Store struct {
	pool *pgxpool.Pool
}

var columns = []string{"seq", "serial", "spiffe_id", "agent_id", "not_before", "not_after", "issuer_key_id",
	"public_key_sha256", "node_id", "committed_at", "cert_der", "prev_hash", "hash", "event_action", "event_detail"}

// New connects, checks the connection and migrates the schema.
func New(ctx context.Context, cfg Config) (_ *Store, err error) {
	defer markUnavailable(&err)
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse DSN: %w", redact.Err(err)) // pgx masks the password on a best-effort basis
	}
	if cfg.SearchPath != "" {
		pc.ConnConfig.RuntimeParams["search_path"] = cfg.SearchPath
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	}
	where := fmt.Sprintf("%s:%d (database %q, user %q)", pc.ConnConfig.Host, pc.ConnConfig.Port,
		pc.ConnConfig.Database, pc.ConnConfig.User)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect to %s: %w", where, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect to %s: %w", where, err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{pool: pool}, nil
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// LastSeq returns the highest stored seq, 0 when empty.
func (s *Store) LastSeq(ctx context.Context) (_ uint64, err error) {
	defer markUnavailable(&err)
	var last int64
	if err := s.pool.QueryRow(ctx, core.LastSeqSQL).Scan(&last); err != nil {
		return 0, fmt.Errorf("postgres: last seq: %w", err)
	}
	return uint64(last), nil
}

// Append stores a batch in one transaction; see storage.Store. Writers are
// serialised with a SHARE ROW EXCLUSIVE table lock (readers are not blocked).
// A batch that starts at LastSeq+1 is copied straight into the table; one
// that overlaps stored records is checked against them and its new part
// goes through the staging table.
func (s *Store) Append(ctx context.Context, recs []*record.Record) (err error) {
	defer markUnavailable(&err)
	if err := core.CheckBatch("postgres", recs); err != nil {
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: append: begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit
	if _, err := tx.Exec(ctx, "LOCK TABLE issuance_records IN SHARE ROW EXCLUSIVE MODE"); err != nil {
		return fmt.Errorf("postgres: append: lock: %w", err)
	}
	var last int64
	if err := tx.QueryRow(ctx, core.LastSeqSQL).Scan(&last); err != nil {
		return fmt.Errorf("postgres: append: last seq: %w", err)
	}
	n, err := core.SplitBatch("postgres", recs, uint64(last))
	if err != nil {
		return err
	}
	switch {
	case n == 0:
		// Entirely new (first seq == last+1, checked under the lock):
		// COPY straight into the table.
		if err := insertDirect(ctx, tx, recs); err != nil {
			return err
		}
	case n < len(recs):
		if err := checkOverlap(ctx, tx, recs[:n]); err != nil {
			return err
		}
		if err := insert(ctx, tx, recs[n:]); err != nil {
			return err
		}
	default:
		if err := checkOverlap(ctx, tx, recs); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: append: commit: %w", err)
	}
	return nil
}

// insertDirect copies recs, all above the last stored seq, straight into
// issuance_records. Under the table lock the only possible unique violation
// is a serial stored at another seq; the batch is then rolled back to a
// savepoint and replayed through the staging path, which names the record.
func insertDirect(ctx context.Context, tx pgx.Tx, recs []*record.Record) error {
	if _, err := tx.Exec(ctx, "SAVEPOINT direct_copy"); err != nil {
		return fmt.Errorf("postgres: append: savepoint: %w", err)
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"issuance_records"}, columns, copySource(recs))
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23505" { // unique_violation
		return fmt.Errorf("postgres: append: copy: %w", err)
	}
	if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT direct_copy"); err != nil {
		return fmt.Errorf("postgres: append: rollback to savepoint: %w", err)
	}
	return insert(ctx, tx, recs)
}

func copySource(recs []*record.Record) pgx.CopyFromSource {
	return pgx.CopyFromSlice(len(recs), func(i int) ([]any, error) {
		r := recs[i]
		return []any{int64(r.Seq), r.Serial, r.SPIFFEID, r.AgentID, record.Truncate(r.NotBefore),
			record.Truncate(r.NotAfter), r.IssuerKeyID, r.PublicKeySHA256, r.NodeID,
			record.Truncate(r.CommittedAt), core.NonNil(r.CertDER), r.PrevHash, r.Hash, r.Action, core.NonNil(r.Detail)}, nil
	})
}

// insert copies recs into the connection's staging table and moves them
// into issuance_records. Seq conflicts cannot happen under the table lock;
// a skipped row therefore means its serial is stored at another seq.
func insert(ctx context.Context, tx pgx.Tx, recs []*record.Record) error {
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS issuance_stage
		(LIKE issuance_records INCLUDING DEFAULTS) ON COMMIT DELETE ROWS`); err != nil {
		return fmt.Errorf("postgres: append: staging table: %w", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"issuance_stage"}, columns, copySource(recs)); err != nil {
		return fmt.Errorf("postgres: append: copy: %w", err)
	}
	tag, err := tx.Exec(ctx, `INSERT INTO issuance_records (`+core.Columns+`)
		SELECT `+core.Columns+` FROM issuance_stage ON CONFLICT DO NOTHING`)
	if err != nil {
		return fmt.Errorf("postgres: append: insert: %w", err)
	}
	if tag.RowsAffected() == int64(len(recs)) {
		return nil
	}
	var seq int64
	var serial string
	err = tx.QueryRow(ctx, `SELECT s.seq, s.serial FROM issuance_stage s
		WHERE NOT EXISTS (SELECT 1 FROM issuance_records r WHERE r.seq = s.seq AND r.serial = s.serial AND r.hash = s.hash)
		ORDER BY s.seq LIMIT 1`).Scan(&seq, &serial)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("postgres: append: find conflict: %w", err)
	}
	return fmt.Errorf("postgres: append: seq %d: serial %s is already stored at another seq: %w",
		seq, serial, core.ErrConflict)
}

// checkOverlap compares records at or below the last seq with the stored ones.
func checkOverlap(ctx context.Context, tx pgx.Tx, recs []*record.Record) error {
	rows, err := tx.Query(ctx, "SELECT seq, serial, hash FROM issuance_records WHERE seq BETWEEN $1 AND $2 ORDER BY seq",
		int64(recs[0].Seq), int64(recs[len(recs)-1].Seq))
	if err != nil {
		return fmt.Errorf("postgres: append: read overlap: %w", err)
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		var seq int64
		var serial string
		var hash []byte
		if err := rows.Scan(&seq, &serial, &hash); err != nil {
			return fmt.Errorf("postgres: append: read overlap: %w", err)
		}
		r := recs[i]
		if uint64(seq) != r.Seq {
			break
		}
		if serial != r.Serial || !bytes.Equal(hash, r.Hash) {
			return fmt.Errorf("postgres: append: seq %d: stored record (serial %s) differs from the new one (serial %s): %w",
				r.Seq, serial, r.Serial, core.ErrConflict)
		}
		i++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: append: read overlap: %w", err)
	}
	if i < len(recs) {
		return fmt.Errorf("postgres: append: seq %d is at or below the last stored seq but absent (deleted?): %w",
			recs[i].Seq, core.ErrConflict)
	}
	return nil
}

// Query returns matching records, newest first; see storage.Store.
func (s *Store) Query(ctx context.Context, f core.Filter) (_ []*record.Record, err error) {
	defer markUnavailable(&err)
	f, err = core.Normalize(f)
	if err != nil {
		return nil, err
	}
	q, args := core.QuerySQL(f, core.Dollar, func(t time.Time) any { return t })
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: query: %w", err)
	}
	defer rows.Close()
	out, err := core.Collect(rows, func() (*record.Record, error) { return scan(rows) })
	if err != nil {
		return nil, fmt.Errorf("postgres: query: %w", err)
	}
	return out, nil
}

// Range streams records from..to in seq order; see storage.Store.
func (s *Store) Range(ctx context.Context, from, to uint64, fn func(*record.Record) error) (err error) {
	defer markUnavailable(&err)
	q, args := core.RangeSQL(from, to, core.Dollar)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("postgres: range: %w", err)
	}
	defer rows.Close()
	return core.Each(rows, "postgres: range", func() (*record.Record, error) { return scan(rows) }, fn)
}

func scan(rows pgx.Rows) (*record.Record, error) {
	var r record.Record
	var seq int64
	if err := rows.Scan(&seq, &r.Serial, &r.SPIFFEID, &r.AgentID, &r.NotBefore, &r.NotAfter, &r.IssuerKeyID,
		&r.PublicKeySHA256, &r.NodeID, &r.CommittedAt, &r.CertDER, &r.PrevHash, &r.Hash, &r.Action, &r.Detail); err != nil {
		return nil, err
	}
	if len(r.Detail) == 0 {
		r.Detail = nil
	}
	r.Seq = uint64(seq)
	r.NotBefore, r.NotAfter, r.CommittedAt = r.NotBefore.UTC(), r.NotAfter.UTC(), r.CommittedAt.UTC()
	return &r, nil
}
