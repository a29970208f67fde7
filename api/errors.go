package api

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/roles"
	"github.com/tier0-ca/tier0/signer"
	"github.com/tier0-ca/tier0/storage"
)

// codeOf maps a domain error to its gRPC code. It is the one place where
// errors become status codes (invariant 5): bad input is InvalidArgument,
// deny is PermissionDenied, a missing quorum is Unavailable (retryable),
// and anything we did not anticipate is Internal.
func codeOf(err error) codes.Code {
	switch {
	case err == nil:
		return codes.OK
	case errors.Is(err, ca.ErrPermissionDenied):
		return codes.PermissionDenied
	case errors.Is(err, ca.ErrInvalidCSR), errors.Is(err, ca.ErrInvalidID),
		errors.Is(err, ca.ErrInvalidTTL), errors.Is(err, ca.ErrWeakKey),
		errors.Is(err, ca.ErrBatchTooLarge), errors.Is(err, storage.ErrBadFilter),
		errors.Is(err, roles.ErrInvalidName), errors.Is(err, errBadInput):
		return codes.InvalidArgument
	case errors.Is(err, ha.ErrTokenInvalid):
		return codes.PermissionDenied
	case errors.Is(err, ha.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, ha.ErrExists):
		return codes.AlreadyExists
	case errors.Is(err, ha.ErrNotLeader), errors.Is(err, ha.ErrUnavailable),
		errors.Is(err, storage.ErrUnavailable): // record store not connected yet (--store-optional)
		return codes.Unavailable
	case errors.Is(err, signer.ErrUnavailable), errors.Is(err, signer.ErrThrottled),
		errors.Is(err, signer.ErrKMS), errors.Is(err, signer.ErrTimeout):
		// The HSM/KMS is down or slow: retryable, and not the caller's fault.
		return codes.Unavailable
	case errors.Is(err, errOverloaded):
		return codes.ResourceExhausted
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	default:
		return codes.Internal
	}
}

// errBadInput marks request validation failures found in api itself.
var errBadInput = errors.New("invalid argument")

// errOverloaded is returned when the admission queue is full.
var errOverloaded = errors.New("server overloaded, retry later")

// toStatus converts err into a gRPC status error. Internal errors are logged
// in full and returned with a generic message so no internals leak.
func (s *Server) toStatus(ctx context.Context, method string, err error) error {
	code := codeOf(err)
	s.metrics.errors.WithLabelValues(method, code.String()).Inc()
	if code == codes.Internal {
		s.log.ErrorContext(ctx, "internal error", slog.String("method", method), slog.Any("err", err))
		return status.Error(codes.Internal, "internal error")
	}
	return status.Error(code, err.Error())
}
