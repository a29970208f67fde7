package storage_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

func TestOpenSQLite(t *testing.T) {
	dir := t.TempDir()
	for _, dsn := range []string{"sqlite:" + filepath.Join(dir, "a.sqlite"), filepath.Join(dir, "b.db"), "sqlite://" + filepath.Join(dir, "c.db")} {
		s, err := storage.Open(context.Background(), dsn)
		if err != nil {
			t.Fatalf("Open(%q): %v", dsn, err)
		}
		storagetest.Append(t, s, storagetest.Chain("o", 1, 5, record.Genesis), 5)
		if res, err := storage.Verify(context.Background(), s, 1, 0); err != nil || !res.OK() || res.Checked != 5 {
			t.Fatalf("Verify after Open(%q) = %+v, %v", dsn, res, err)
		}
		s.Close()
	}
}

func TestOpenPostgres(t *testing.T) {
	dsn, schema := storagetest.PostgresSchema(t)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	s, err := storage.Open(context.Background(), dsn+sep+"search_path="+schema)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	storagetest.Append(t, s, storagetest.Chain("o", 1, 5, record.Genesis), 5)
	if res, err := storage.Verify(context.Background(), s, 1, 0); err != nil || !res.OK() || res.Checked != 5 {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct{ dsn, want string }{
		{"mysql://root:hunter2@db/x", `storage: open: unknown DSN scheme "mysql": want sqlite:/path.db, a path ending in .db, or postgres://`},
		{"/var/lib/tier0/records", `storage: open: unknown DSN scheme "(none)": want sqlite:/path.db, a path ending in .db, or postgres://`},
		{"postgres://u:hunter2@127.0.0.1:1/x?sslmode=disable&connect_timeout=5", `storage: open: postgres: connect to 127.0.0.1:1 (database "x", user "u"): `},
	} {
		_, err := storage.Open(context.Background(), tc.dsn)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Open(%q) = %v, want %q...", tc.dsn, err, tc.want)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(%q) error contains the password: %v", tc.dsn, err)
		}
	}
}
