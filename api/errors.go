package api

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/redact"
	"github.com/tier0-ca/tier0/internal/roles"
	"github.com/tier0-ca/tier0/internal/tlog"
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
	case errors.Is(err, ha.ErrTokenInvalid), errors.Is(err, ha.ErrDenied):
		return codes.PermissionDenied
	case errors.Is(err, ha.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, ha.ErrExists):
		return codes.AlreadyExists
	case errors.Is(err, ha.ErrPrecondition):
		return codes.FailedPrecondition
	case errors.Is(err, tlog.ErrTree): // the store's records no longer hash to a signed tree root (auditlog.go)
		return codes.DataLoss
	case errors.Is(err, ha.ErrNotLeader), errors.Is(err, ha.ErrUnavailable),
		errors.Is(err, storage.ErrUnavailable): // record store not connected yet (--store-optional)
		return codes.Unavailable
	case isSignerUnavailable(err):
		// The HSM/KMS is down, throttling or slow: retryable, and not the
		// caller's fault.
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

func isSignerUnavailable(err error) bool {
	return errors.Is(err, signer.ErrUnavailable) || errors.Is(err, signer.ErrThrottled) ||
		errors.Is(err, signer.ErrKMS) || errors.Is(err, signer.ErrTimeout) || errors.Is(err, signer.ErrDevice)
}

// toStatus converts err into a gRPC status error. Internal errors are logged
// in full and returned with a generic message so no internals leak; the
// others get a client-safe message (publicMessage) and, when err says when
// to retry (a signer's *UnavailableError), the retry-after-ms trailer that
// api/client honours.
func (s *Server) toStatus(ctx context.Context, method string, err error) error {
	code := codeOf(err)
	s.metrics.errors.WithLabelValues(method, code.String()).Inc()
	if code == codes.Internal {
		s.lines.Log(ctx, slog.LevelError, "internal error "+method, "internal", "internal error", slog.String("method", method), slog.Any("err", err))
		return status.Error(codes.Internal, "internal error")
	}
	s.noteSignerError(ctx, method, err)
	return status.Error(code, publicMessage(err))
}

// setRetryAfter sends err's retry hint, if it has one, in the call's
// trailer (RetryAfterKey).
func setRetryAfter(ctx context.Context, err error) {
	var ue *signer.UnavailableError
	if errors.As(err, &ue) {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(RetryAfterKey, strconv.FormatInt(ue.RetryAfter.Milliseconds(), 10)))
	}
}

// noteSignerError sets the retry hint of a signer failure and logs the
// full error (key ARN, endpoint, HSM code: what the client is not told),
// at most once every signerLogEvery with the count of the others; the
// signer itself logs its state changes.
func (s *Server) noteSignerError(ctx context.Context, method string, err error) {
	if !isSignerUnavailable(err) {
		return
	}
	setRetryAfter(ctx, err)
	n := s.signerLog.errors.Add(1)
	s.signerLog.Do(func() {
		s.log.WarnContext(ctx, "CA key unavailable: answering Unavailable", slog.String("method", method),
			slog.Int64("calls_since_last_line", n-s.signerLog.logged.Swap(n)), slog.Any("err", err))
	})
}

// signerLogEvery bounds the "CA key unavailable" log lines.
const signerLogEvery = 10 * time.Second

// signerLog rate-limits the log of signer failures answered Unavailable.
type signerLog struct {
	rate.Sometimes
	errors atomic.Int64 // calls answered Unavailable for the signer
	logged atomic.Int64 // errors at the last line
}

// awsARN matches AWS ARNs, which carry account IDs: never shown to clients.
var awsARN = regexp.MustCompile(`arn:aws[A-Za-z-]*:[A-Za-z0-9-]+:[A-Za-z0-9-]*:\d{12}:[^\s"',;)]+`)

// publicMessage is what a client is told about a non-Internal err. A
// signer failure says only that the CA key is unavailable and when to
// retry, never the key's ARN, account, endpoint or the KMS's or HSM's own
// words; any other text loses URL credentials and ARNs.
func publicMessage(err error) string {
	var ue *signer.UnavailableError
	if errors.As(err, &ue) {
		return ue.Public()
	}
	if isSignerUnavailable(err) {
		return "signer: CA key unavailable"
	}
	return awsARN.ReplaceAllString(redact.Error(err), "arn:aws:(redacted)")
}

// signerUnavailable returns the first item error when every item of a
// batch failed because the CA key cannot sign: the call as a whole then
// answers Unavailable with the retry hint, which clients hold to.
func signerUnavailable(errs []error) error {
	for _, err := range errs {
		if err == nil || !isSignerUnavailable(err) {
			return nil
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs[0]
}
