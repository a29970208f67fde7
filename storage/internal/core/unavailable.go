package core

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/tier0-ca/tier0/internal/redact"
)

// MarkUnavailable wraps *err with ErrUnavailable when it says the store
// could not be reached or could not do I/O (a connection-level failure, as
// opposed to a bad query or a conflicting record): backendDown is the
// backend's own test, and network failures common to all (a refused or
// reset connection, an EOF mid-reply) count too. The cause stays in the
// chain and in the message (with any URL credentials masked). A caller's
// cancellation is never marked. Use it deferred, on named results:
//
//	func (s *Store) Query(...) (_ []*record.Record, err error) {
//		defer markUnavailable(&err)
func MarkUnavailable(err *error, backendDown func(error) bool) {
	e := *err
	if e == nil || errors.Is(e, ErrUnavailable) || errors.Is(e, context.Canceled) {
		return
	}
	if backendDown(e) || networkDown(e) {
		*err = fmt.Errorf("%w: %w", ErrUnavailable, redact.Err(e))
	}
}

// networkDown reports the connection failures any backend can meet.
func networkDown(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ENOSPC) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone)
}
