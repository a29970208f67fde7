// Package storage is the tier0 record store: every committed issuance
// record reaches it exactly once, in journal order (DESIGN.md invariant 2),
// and Verify re-checks the hash chain over what it holds (invariant 7).
//
// Two backends implement Store: storage/sqlite (the embedded default) and
// storage/postgres. Open picks one from a DSN; both migrate their schema on
// open from numbered .sql files embedded in the binary. The conformance
// suite in storage/storagetest runs against both.
package storage

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/internal/redact"
	"github.com/tier0-ca/tier0/storage/internal/core"
	"github.com/tier0-ca/tier0/storage/postgres"
	"github.com/tier0-ca/tier0/storage/sqlite"
)

// Store holds issuance records. Implementations are safe for concurrent use.
type Store interface {
	// LastSeq returns the highest stored seq; in a store without records,
	// the base seq of the lineage that claimed it (see ClaimLineage), else 0.
	LastSeq(ctx context.Context) (uint64, error)
	// Append stores a batch of consecutive records in journal order, in
	// one transaction. It is idempotent: records already present (same
	// seq, serial and hash) are skipped, so an exporter may resend an
	// overlapping batch after a crash. A batch whose first new seq is not
	// LastSeq+1 fails with ErrGap; a record that differs from the stored one
	// at its seq, or whose serial is stored at another seq, fails with
	// ErrConflict. Nothing is written when Append fails.
	Append(ctx context.Context, recs []*record.Record) error
	// Query returns records matching f, newest first (seq descending).
	// A malformed filter fails with ErrBadFilter.
	Query(ctx context.Context, f Filter) ([]*record.Record, error)
	// Range calls fn for each record with from <= seq <= to in ascending
	// seq order (to == 0 means up to the last), streaming rows from the
	// database. An error from fn stops the scan and is returned as is.
	Range(ctx context.Context, from, to uint64, fn func(*record.Record) error) error
	// Lineage returns the lineage (cluster and line of history) whose
	// records the store holds; ok is false while no exporter has claimed
	// it (an empty store, or one written by a tier0 without lineages).
	Lineage(ctx context.Context) (l record.Lineage, ok bool, err error)
	// ClaimLineage claims an unclaimed store for l (written by node `by`
	// at `at`) and returns the store's lineage after the call: l, or the
	// lineage that claimed it first. Of racing claims exactly one wins; a
	// claim is never changed. A malformed l wraps record.ErrLineage.
	// Deciding whether a journal may claim the store is the exporter's job
	// (ha); the store only makes the claim atomic and permanent.
	ClaimLineage(ctx context.Context, l record.Lineage, by string, at time.Time) (record.Lineage, error)
	Close() error
}

// Ranger streams stored records in seq order (Store.Range): what Verify
// reads.
type Ranger interface {
	Range(ctx context.Context, from, to uint64, fn func(*record.Record) error) error
}

// Filter selects records for Query. Zero fields do not filter; Since and
// Until apply to NotBefore (Since <= not_before < Until); Serial is any
// spelling storage/serial accepts, matched in canonical form; IssuerKeyID
// is hex in any case; Kind is KindX509, KindJWT or KindAdmin; Limit 0 means 1000, at
// most 10000.
type Filter = core.Filter

// Record kinds: an X.509 certificate, a JWT-SVID or an admin event.
const (
	KindX509  = core.KindX509
	KindJWT   = core.KindJWT
	KindAdmin = core.KindAdmin
)

// KindOf returns the kind of a record with this issuer_key_id.
func KindOf(issuerKeyID string) string { return core.KindOf(issuerKeyID) }

// Query limits.
const (
	DefaultLimit = core.DefaultLimit
	MaxLimit     = core.MaxLimit
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrGap: Append would leave a hole in the sequence.
	ErrGap = core.ErrGap
	// ErrConflict: Append met a different record at an existing seq (or an
	// existing serial at a different seq).
	ErrConflict = core.ErrConflict
	// ErrBadFilter: a Query filter (or Verify range) is malformed.
	ErrBadFilter = core.ErrBadFilter
	// ErrSchemaTooNew: the database was migrated by a newer tier0.
	ErrSchemaTooNew = core.ErrSchemaTooNew
	// ErrUnavailable: the record store cannot be reached or cannot do I/O
	// (connection refused or lost, Postgres shutting down or out of
	// connections or disk, SQLite busy, locked or failing I/O), or is not
	// connected yet (OpenLazy). The cause is wrapped. Retryable: the
	// API answers Unavailable.
	ErrUnavailable = core.ErrUnavailable
)

// Open opens the store named by dsn and migrates its schema:
//
//	sqlite:/path/to/file.db   (or any path ending in .db)
//	postgres://user@host:5432/db?sslmode=verify-full   (or postgresql://)
//
// Postgres DSN parameters pgx does not know (for example search_path) are
// sent as run-time parameters. Errors never include a password.
func Open(ctx context.Context, dsn string) (Store, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		s, err := postgres.New(ctx, postgres.Config{DSN: dsn})
		if err != nil { // pgx masks passwords it recognises; mask any URL's too
			return nil, fmt.Errorf("storage: open: %w", redact.Err(err))
		}
		return s, nil
	case strings.HasPrefix(dsn, "sqlite:"), strings.HasSuffix(dsn, ".db"):
		p := strings.TrimPrefix(dsn, "sqlite:")
		p = strings.TrimPrefix(p, "//")
		s, err := sqlite.New(ctx, sqlite.Config{Path: p})
		if err != nil {
			return nil, fmt.Errorf("storage: open: %w", err)
		}
		return s, nil
	}
	scheme, _, ok := strings.Cut(dsn, ":")
	if !ok || strings.ContainsAny(scheme, "/@") {
		scheme = "(none)"
	}
	return nil, fmt.Errorf("storage: open: unknown DSN scheme %q: want sqlite:/path.db, a path ending in .db, or postgres://", scheme)
}
