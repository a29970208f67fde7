package postgres

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestServerDown(t *testing.T) {
	for code, want := range map[string]bool{
		"08006": true,  // connection failure
		"53100": true,  // disk full
		"53300": true,  // too many connections
		"58030": true,  // I/O error
		"57P01": true,  // admin shutdown
		"57P03": true,  // cannot connect now (starting up)
		"57014": false, // query canceled (statement timeout)
		"23505": false, // unique violation
		"42P01": false, // undefined table
	} {
		err := fmt.Errorf("postgres: query: %w", &pgconn.PgError{Code: code})
		if got := serverDown(err); got != want {
			t.Errorf("SQLSTATE %s: serverDown = %v, want %v", code, got, want)
		}
	}
	if !serverDown(fmt.Errorf("x: %w", pgconn.ErrConnClosed)) {
		t.Error("conn closed is not down")
	}
}
