package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
	"github.com/tier0-ca/tier0/storage/sqlite"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

func open(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.New(context.Background(), sqlite.Config{Path: path})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// tamperer edits the database file through a connection of its own.
type tamperer struct{ db *sql.DB }

func newTamperer(t *testing.T, path string) *tamperer {
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return &tamperer{db}
}

func (m *tamperer) Exec(ctx context.Context, q string, args ...any) error {
	_, err := m.db.ExecContext(ctx, q, args...)
	return err
}

func (m *tamperer) Insert(ctx context.Context, r *record.Record) error {
	return m.Exec(ctx, `INSERT INTO issuance_records (seq, serial, spiffe_id, agent_id, not_before, not_after, issuer_key_id,
		public_key_sha256, node_id, committed_at, cert_der, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		r.Seq, r.Serial, r.SPIFFEID, r.AgentID, r.NotBefore.UnixMicro(), r.NotAfter.UnixMicro(), r.IssuerKeyID,
		r.PublicKeySHA256, r.NodeID, r.CommittedAt.UnixMicro(), r.CertDER, r.PrevHash, r.Hash)
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return open(t, filepath.Join(t.TempDir(), "records.db"))
	})
}

func TestTamper(t *testing.T) {
	storagetest.RunTamper(t, func(t *testing.T) (storage.Store, storagetest.Tamperer) {
		p := filepath.Join(t.TempDir(), "records.db")
		return open(t, p), newTamperer(t, p)
	})
}

func TestMigrateIdempotentAndWAL(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "records.db")
	s := open(t, p)
	storagetest.Append(t, s, storagetest.Chain("m", 1, 3, record.Genesis), 3)
	s.Close()
	s = open(t, p) // migrations already applied: a no-op
	if n, err := s.LastSeq(ctx); err != nil || n != 3 {
		t.Fatalf("LastSeq after reopen = %d, %v; want 3", n, err)
	}
	tam := newTamperer(t, p)
	var versions int
	var mode string
	if err := tam.db.QueryRow("SELECT count(*) FROM schema_version").Scan(&versions); err != nil || versions != migrations(t) {
		t.Fatalf("schema_version rows = %d, %v; want %d", versions, err, migrations(t))
	}
	if err := tam.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestSchemaTooNew(t *testing.T) {
	p := filepath.Join(t.TempDir(), "records.db")
	open(t, p).Close()
	if err := newTamperer(t, p).Exec(context.Background(), "INSERT INTO schema_version VALUES (999, '0999_future.sql', 0)"); err != nil {
		t.Fatal(err)
	}
	_, err := sqlite.New(context.Background(), sqlite.Config{Path: p})
	if !errors.Is(err, storage.ErrSchemaTooNew) {
		t.Fatalf("New on a version 999 database = %v, want ErrSchemaTooNew", err)
	}
	want := "sqlite: database schema version 999 is newer than this binary knows (" + strconv.Itoa(migrations(t)) + "); upgrade tier0: storage: schema is newer than this binary"
	if err.Error() != want {
		t.Fatalf("error\n got %q\nwant %q", err, want)
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  sqlite.Config
		want string
	}{
		{sqlite.Config{}, "sqlite: config: Path must name a database file"},
		{sqlite.Config{Path: ":memory:"}, "sqlite: config: Path must name a database file"},
		{sqlite.Config{Path: filepath.Join(t.TempDir(), "no", "such", "dir", "x.db")}, "sqlite: open "},
	} {
		_, err := sqlite.New(context.Background(), tc.cfg)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want %q...", tc.cfg, err, tc.want)
		}
	}
}

func TestAudit(t *testing.T) {
	storagetest.RunAudit(t, func(t *testing.T) (storage.AuditStore, storagetest.Tamperer) {
		p := filepath.Join(t.TempDir(), "records.db")
		return open(t, p), newTamperer(t, p)
	})
}

// TestUnavailableWhileLocked: another process holding the write lock past
// the busy timeout makes Append fail with storage.ErrUnavailable (SQLITE_BUSY,
// retryable), not a generic error; reads go on (WAL) and the write works
// once the lock is gone.
func TestUnavailableWhileLocked(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "records.db")
	s, err := sqlite.New(ctx, sqlite.Config{Path: path, BusyTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs := storagetest.Chain("busy", 1, 2, record.Genesis)
	if err := s.Append(ctx, recs[:1]); err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	err = s.Append(ctx, recs[1:])
	if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "SQLITE_BUSY") {
		t.Fatalf("Append under another writer's lock: %v, want storage.ErrUnavailable (SQLITE_BUSY)", err)
	}
	if last, err := s.LastSeq(ctx); err != nil || last != 1 {
		t.Fatalf("read while locked: %d, %v", last, err)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, recs[1:]); err != nil {
		t.Fatalf("Append once the lock is gone: %v", err)
	}
}

// migrations returns the number of migration files this binary embeds.
func migrations(t *testing.T) int {
	t.Helper()
	ms, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(ms) == 0 {
		t.Fatalf("migrations: %v, %d files", err, len(ms))
	}
	return len(ms)
}

func TestEvents(t *testing.T) {
	storagetest.RunEvents(t, func(t *testing.T) (storage.Store, storagetest.Tamperer) {
		p := filepath.Join(t.TempDir(), "records.db")
		return open(t, p), newTamperer(t, p)
	})
}
