package postgres_test

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
	"github.com/tier0-ca/tier0/storage/postgres"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

// open returns a store in a fresh schema, and the DSN and schema.
func open(t testing.TB) (*postgres.Store, string, string) {
	t.Helper()
	dsn, schema := storagetest.PostgresSchema(t)
	s, err := postgres.New(context.Background(), postgres.Config{DSN: dsn, SearchPath: schema})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dsn, schema
}

// tamperer edits the schema through a connection of its own.
type tamperer struct{ conn *pgx.Conn }

func newTamperer(t testing.TB, dsn, schema string) *tamperer {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["search_path"] = schema
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	return &tamperer{conn}
}

func (m *tamperer) Exec(ctx context.Context, q string, args ...any) error {
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	_, err := m.conn.Exec(ctx, b.String(), args...)
	return err
}

func (m *tamperer) Insert(ctx context.Context, r *record.Record) error {
	return m.Exec(ctx, `INSERT INTO issuance_records (seq, serial, spiffe_id, agent_id, not_before, not_after, issuer_key_id,
		public_key_sha256, node_id, committed_at, cert_der, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		int64(r.Seq), r.Serial, r.SPIFFEID, r.AgentID, r.NotBefore, r.NotAfter, r.IssuerKeyID,
		r.PublicKeySHA256, r.NodeID, r.CommittedAt, r.CertDER, r.PrevHash, r.Hash)
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s, _, _ := open(t)
		return s
	})
}

func TestTamper(t *testing.T) {
	storagetest.RunTamper(t, func(t *testing.T) (storage.Store, storagetest.Tamperer) {
		s, dsn, schema := open(t)
		return s, newTamperer(t, dsn, schema)
	})
}

func TestMigrateIdempotent(t *testing.T) {
	ctx := context.Background()
	s, dsn, schema := open(t)
	storagetest.Append(t, s, storagetest.Chain("m", 1, 3, record.Genesis), 3)
	s2, err := postgres.New(ctx, postgres.Config{DSN: dsn, SearchPath: schema})
	if err != nil {
		t.Fatalf("second New: %v", err)
	}
	defer s2.Close()
	if n, err := s2.LastSeq(ctx); err != nil || n != 3 {
		t.Fatalf("LastSeq through a second store = %d, %v; want 3", n, err)
	}
	var versions int
	if err := newTamperer(t, dsn, schema).conn.QueryRow(ctx, "SELECT count(*) FROM schema_version").Scan(&versions); err != nil || versions != migrations(t) {
		t.Fatalf("schema_version rows = %d, %v; want %d", versions, err, migrations(t))
	}
}

func TestSchemaTooNew(t *testing.T) {
	ctx := context.Background()
	_, dsn, schema := open(t)
	if err := newTamperer(t, dsn, schema).Exec(ctx, "INSERT INTO schema_version (version, name) VALUES (999, '0999_future.sql')"); err != nil {
		t.Fatal(err)
	}
	_, err := postgres.New(ctx, postgres.Config{DSN: dsn, SearchPath: schema})
	if !errors.Is(err, storage.ErrSchemaTooNew) {
		t.Fatalf("New on a version 999 schema = %v, want ErrSchemaTooNew", err)
	}
	want := "postgres: database schema version 999 is newer than this binary knows (" + strconv.Itoa(migrations(t)) + "); upgrade tier0: storage: schema is newer than this binary"
	if err.Error() != want {
		t.Fatalf("error\n got %q\nwant %q", err, want)
	}
}

func TestConnectError(t *testing.T) {
	_, err := postgres.New(context.Background(), postgres.Config{DSN: "postgres://tier0:s3cret-pw@127.0.0.1:1/records?sslmode=disable"})
	if err == nil {
		t.Fatal("New with nothing listening on port 1 succeeded")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, `storage: record store unavailable: postgres: connect to 127.0.0.1:1 (database "records", user "tier0"): `) ||
		!errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("error %q is not Unavailable naming the host first", msg)
	}
	if strings.Contains(msg, "s3cret-pw") {
		t.Errorf("error %q contains the password", msg)
	}
	_, err = postgres.New(context.Background(), postgres.Config{DSN: "postgres://tier0:s3cret-pw@127.0.0.1:notaport/x"})
	if err == nil || strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("New with a malformed DSN = %v, want an error without the password", err)
	}
}

func TestAudit(t *testing.T) {
	storagetest.RunAudit(t, func(t *testing.T) (storage.AuditStore, storagetest.Tamperer) {
		s, dsn, schema := open(t)
		return s, newTamperer(t, dsn, schema)
	})
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
		s, dsn, schema := open(t)
		return s, newTamperer(t, dsn, schema)
	})
}
