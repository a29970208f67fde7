// Package sqlite is the embedded record store (the default of a
// single-node tier0): modernc.org/sqlite, WAL mode, one writer connection
// and a small pool of read-only connections.
package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage/internal/core"
)

// Config configures a Store.
type Config struct {
	Path        string        // database file; created when missing (":memory:" is not supported)
	BusyTimeout time.Duration // how long a statement waits for a lock; default 5s
	MaxReaders  int           // read connections; default 4
}

// Store is the SQLite record store. It implements storage.Store.
type Store struct {
	w *sql.DB // single writer connection
	r *sql.DB // read-only pool
}

// New opens (creating if needed) and migrates the database at cfg.Path.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Path == "" || cfg.Path == ":memory:" {
		return nil, errors.New("sqlite: config: Path must name a database file")
	}
	if cfg.BusyTimeout <= 0 {
		cfg.BusyTimeout = 5 * time.Second
	}
	if cfg.MaxReaders <= 0 {
		cfg.MaxReaders = 4
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", cfg.BusyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	// FULL: a commit survives power loss. The exporter tells Raft "exported
	// up to N" after Append returns, and snapshots then drop the records.
	q.Add("_pragma", "synchronous(FULL)")
	q.Set("_txlock", "immediate")
	w, err := sql.Open("sqlite", cfg.Path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", cfg.Path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", cfg.Path, err)
	}
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, err
	}
	rq := url.Values{}
	rq.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", cfg.BusyTimeout.Milliseconds()))
	rq.Add("_pragma", "query_only(1)")
	r, err := sql.Open("sqlite", cfg.Path+"?"+rq.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", cfg.Path, err)
	}
	r.SetMaxOpenConns(cfg.MaxReaders)
	r.SetMaxIdleConns(cfg.MaxReaders)
	return &Store{w: w, r: r}, nil
}

// Close closes both connection pools.
func (s *Store) Close() error {
	return errors.Join(s.r.Close(), s.w.Close())
}

// LastSeq returns the highest stored seq, 0 when empty.
func (s *Store) LastSeq(ctx context.Context) (_ uint64, err error) {
	defer markUnavailable(&err)
	var last int64
	if err := s.r.QueryRowContext(ctx, core.LastSeqSQL).Scan(&last); err != nil {
		return 0, fmt.Errorf("sqlite: last seq: %w", err)
	}
	return uint64(last), nil
}

// Append stores a batch in one transaction; see storage.Store.
func (s *Store) Append(ctx context.Context, recs []*record.Record) (err error) {
	defer markUnavailable(&err)
	if err := core.CheckBatch("sqlite", recs); err != nil {
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	tx, err := s.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE: the write lock is taken up front
	if err != nil {
		return fmt.Errorf("sqlite: append: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	var last int64
	if err := tx.QueryRowContext(ctx, core.LastSeqSQL).Scan(&last); err != nil {
		return fmt.Errorf("sqlite: append: last seq: %w", err)
	}
	n, err := core.SplitBatch("sqlite", recs, uint64(last))
	if err != nil {
		return err
	}
	if n > 0 {
		if err := checkOverlap(ctx, tx, recs[:n]); err != nil {
			return err
		}
	}
	if n < len(recs) {
		st, err := tx.PrepareContext(ctx, "INSERT INTO issuance_records ("+core.Columns+") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)") //nolint:gosec // G202: core.Columns is a constant column list
		if err != nil {
			return fmt.Errorf("sqlite: append: prepare: %w", err)
		}
		defer st.Close()
		for _, r := range recs[n:] {
			if _, err := st.ExecContext(ctx, int64(r.Seq), r.Serial, r.SPIFFEID, r.AgentID,
				micros(r.NotBefore), micros(r.NotAfter), r.IssuerKeyID, r.PublicKeySHA256, r.NodeID,
				micros(r.CommittedAt), core.NonNil(r.CertDER), r.PrevHash, r.Hash, r.Action, core.NonNil(r.Detail)); err != nil {
				var se *msqlite.Error
				if errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE {
					return fmt.Errorf("sqlite: append: seq %d: serial %s is already stored at another seq: %w",
						r.Seq, r.Serial, core.ErrConflict)
				}
				return fmt.Errorf("sqlite: append: insert seq %d: %w", r.Seq, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: append: commit: %w", err)
	}
	return nil
}

// checkOverlap compares records at or below the last seq with the stored ones.
func checkOverlap(ctx context.Context, tx *sql.Tx, recs []*record.Record) error {
	first, lastSeq := recs[0].Seq, recs[len(recs)-1].Seq
	rows, err := tx.QueryContext(ctx, "SELECT seq, serial, hash FROM issuance_records WHERE seq BETWEEN ? AND ? ORDER BY seq",
		int64(first), int64(lastSeq))
	if err != nil {
		return fmt.Errorf("sqlite: append: read overlap: %w", err)
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		var seq int64
		var serial string
		var hash []byte
		if err := rows.Scan(&seq, &serial, &hash); err != nil {
			return fmt.Errorf("sqlite: append: read overlap: %w", err)
		}
		r := recs[i]
		if uint64(seq) != r.Seq {
			break
		}
		if serial != r.Serial || !bytes.Equal(hash, r.Hash) {
			return fmt.Errorf("sqlite: append: seq %d: stored record (serial %s) differs from the new one (serial %s): %w",
				r.Seq, serial, r.Serial, core.ErrConflict)
		}
		i++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: append: read overlap: %w", err)
	}
	if i < len(recs) {
		return fmt.Errorf("sqlite: append: seq %d is at or below the last stored seq but absent (deleted?): %w",
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
	q, args := core.QuerySQL(f, core.Question, func(t time.Time) any { return t.UnixMicro() })
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: query: %w", err)
	}
	defer rows.Close()
	out, err := core.Collect(rows, func() (*record.Record, error) { return scan(rows) })
	if err != nil {
		return nil, fmt.Errorf("sqlite: query: %w", err)
	}
	return out, nil
}

// Range streams records from..to in seq order; see storage.Store.
func (s *Store) Range(ctx context.Context, from, to uint64, fn func(*record.Record) error) (err error) {
	defer markUnavailable(&err)
	q, args := core.RangeSQL(from, to, core.Question)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("sqlite: range: %w", err)
	}
	defer rows.Close()
	return core.Each(rows, "sqlite: range", func() (*record.Record, error) { return scan(rows) }, fn)
}

func scan(rows *sql.Rows) (*record.Record, error) {
	var r record.Record
	var seq, nb, na, ca int64
	if err := rows.Scan(&seq, &r.Serial, &r.SPIFFEID, &r.AgentID, &nb, &na, &r.IssuerKeyID,
		&r.PublicKeySHA256, &r.NodeID, &ca, &r.CertDER, &r.PrevHash, &r.Hash, &r.Action, &r.Detail); err != nil {
		return nil, err
	}
	if len(r.Detail) == 0 {
		r.Detail = nil
	}
	r.Seq = uint64(seq)
	r.NotBefore, r.NotAfter, r.CommittedAt = fromMicros(nb), fromMicros(na), fromMicros(ca)
	return &r, nil
}

func micros(t time.Time) int64 { return record.Truncate(t).UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }
