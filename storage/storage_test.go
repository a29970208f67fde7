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
		{"postgres://u:hunter2@127.0.0.1:1/x?sslmode=disable&connect_timeout=5", `storage: open: storage: record store unavailable: postgres: connect to 127.0.0.1:1 (database "x", user "u"): `},
	} {
		_, err := storage.Open(context.Background(), tc.dsn)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Open(%q) = %v, want %q...", tc.dsn, err, tc.want)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(%q) error contains the password: %v", tc.dsn, err)
		}
	}
}

func TestRequireCheckpoint(t *testing.T) {
	base := storage.AuditResult{From: 1, To: 40, LastCheckpoint: 30}
	for _, tc := range []struct {
		name     string
		res      storage.AuditResult
		seq      uint64
		open     bool
		firstBad uint64
		problem  string
	}{
		{"journal knows nothing", base, 0, true, 0, ""},
		{"newest is stored and verified", base, 30, true, 0, ""},
		{"an older one than the newest verified", base, 20, true, 0, ""},
		{"newest deleted", base, 40, true, 40, storage.ProblemMissingCheckpoint},
		{"newest deleted, bounded range", base, 40, false, 40, storage.ProblemMissingCheckpoint},
		{"end of the store cut", base, 50, true, 41, storage.ProblemMissing},
		{"beyond a bounded range: not checked", base, 50, false, 0, ""},
		{"before the range: not checked", storage.AuditResult{From: 35, To: 40}, 31, true, 0, ""},
		{"an earlier problem is kept", func() storage.AuditResult {
			r := base
			r.FirstBad, r.Problem = 7, storage.ProblemModified
			return r
		}(), 40, true, 7, storage.ProblemModified},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.res
			r.RequireCheckpoint(tc.seq, tc.open)
			if r.FirstBad != tc.firstBad || r.Problem != tc.problem {
				t.Fatalf("RequireCheckpoint(%d, %v) = first bad %d %q (%s), want %d %q", tc.seq, tc.open, r.FirstBad, r.Problem, r.Detail, tc.firstBad, tc.problem)
			}
		})
	}
}
