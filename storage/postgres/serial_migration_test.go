package postgres_test

import (
	"context"
	"testing"

	"github.com/tier0-ca/tier0/storage/postgres"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

// TestSerialMigration: records written before migration 0006 are found by
// any spelling of their serial, and by kind, once it has run.
func TestSerialMigration(t *testing.T) {
	ctx := context.Background()
	s, dsn, schema := open(t)
	storagetest.Append(t, s, storagetest.SerialChain(), 10)
	s.Close()
	tam := newTamperer(t, dsn, schema)
	for _, q := range storagetest.Migration0006Undo {
		if err := tam.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var n int
	if err := tam.conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns
		WHERE table_schema = $1 AND table_name = 'issuance_records' AND column_name IN ('serial_hex', 'kind')`, schema).Scan(&n); err != nil || n != 0 {
		t.Fatalf("columns after undoing 0006: %d, %v", n, err)
	}
	s2, err := postgres.New(ctx, postgres.Config{DSN: dsn, SearchPath: schema})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer s2.Close()
	storagetest.CheckSerialLookups(t, s2)
}
