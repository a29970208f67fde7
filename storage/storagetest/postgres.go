package storagetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tier0-ca/tier0/internal/testenv"
)

// PostgresSchema creates a fresh schema t_<random> in the TEST_DATABASE_URL
// database, drops it when t ends, and returns the DSN and the schema name
// (to set as search_path). Without TEST_DATABASE_URL it skips t, or fails
// it under `make test` (see internal/testenv).
func PostgresSchema(t testing.TB) (dsn, schema string) {
	t.Helper()
	dsn = testenv.Get(t, testenv.DatabaseURL)
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	schema = "t_" + hex.EncodeToString(b[:])
	exec := func(q string) error {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, q)
		return err
	}
	if err := exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		if err := exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return dsn, schema
}
