package postgres

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tier0-ca/tier0/storage/internal/core"
)

// markUnavailable wraps a connection-level failure in *err with
// core.ErrUnavailable (deferred by every method that talks to Postgres).
func markUnavailable(err *error) { core.MarkUnavailable(err, serverDown) }

// serverDown reports a failure of the server or of the connection to it,
// not of the statement: a connection attempt that failed (refused, timed
// out, authentication aside it is the same to a caller), a connection pgx
// closed, or SQLSTATE class 08 (connection exception), 53 (insufficient
// resources: disk full, out of memory, too many connections), 58 (system
// error: I/O) and 57P01-57P03 (shutting down, crashed, starting up).
func serverDown(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || errors.Is(err, pgconn.ErrConnClosed) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), strings.HasPrefix(pe.Code, "53"), strings.HasPrefix(pe.Code, "58"),
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03":
			return true
		}
	}
	return false
}
