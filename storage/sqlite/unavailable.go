package sqlite

import (
	"errors"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/tier0-ca/tier0/storage/internal/core"
)

// markUnavailable wraps an I/O-level failure in *err with
// core.ErrUnavailable (deferred by every method that touches the file).
func markUnavailable(err *error) { core.MarkUnavailable(err, fileDown) }

// fileDown reports SQLite's primary result codes for a database that
// cannot be used right now, as opposed to a bad statement: busy or locked
// past the busy timeout, an I/O error, a full disk, a file that cannot be
// opened, no memory.
func fileDown(err error) bool {
	var se *msqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL,
		sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_NOMEM:
		return true
	}
	return false
}
