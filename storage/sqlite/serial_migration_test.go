package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tier0-ca/tier0/storage/storagetest"
)

// TestSerialMigration: records written before migration 0006 are found by
// any spelling of their serial, and by kind, once it has run.
func TestSerialMigration(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "records.db")
	s := open(t, p)
	storagetest.Append(t, s, storagetest.SerialChain(), 10)
	s.Close()
	tam := newTamperer(t, p)
	for _, q := range storagetest.Migration0006Undo {
		if err := tam.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var n int
	if err := tam.db.QueryRow("SELECT count(*) FROM pragma_table_xinfo('issuance_records') WHERE name IN ('serial_hex', 'kind')").Scan(&n); err != nil || n != 0 {
		t.Fatalf("columns after undoing 0006: %d, %v", n, err)
	}
	storagetest.CheckSerialLookups(t, open(t, p))
}
