// Package errs holds the errors shared by the signer backends. The signer
// package re-exports them; callers use errors.Is / errors.As against the
// exported names there.
package errs

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrClosed is returned by Sign after Close.
	ErrClosed = errors.New("signer: closed")
	// ErrUnavailable is wrapped by every *UnavailableError: the CA key
	// cannot sign right now (breaker open, device or KMS failing,
	// throttled, timed out).
	ErrUnavailable = errors.New("signer: CA key unavailable")
	// ErrKMS is returned when a KMS call kept failing (5xx, unreachable)
	// after every retry.
	ErrKMS = errors.New("signer: kms error")
	// ErrThrottled is returned when the KMS kept throttling after every retry.
	ErrThrottled = errors.New("signer: kms throttled")
	// ErrChecksum is returned when a KMS response fails its integrity checksum.
	ErrChecksum = errors.New("signer: kms response checksum mismatch")
	// ErrTimeout is returned when a Sign call exceeds Options.Timeout.
	ErrTimeout = errors.New("signer: sign timed out")
	// ErrDevice is returned when a PKCS#11 token or module fails (device
	// removed or in error, general error, module not initialized).
	ErrDevice = errors.New("signer: hsm device error")
)

// Reasons an UnavailableError gives; they are also the `kind` label of
// tier0_signer_errors_total.
const (
	ReasonCircuitOpen = "circuit_open" // the breaker is open: failing fast while probes run
	ReasonThrottled   = "throttled"    // the KMS kept throttling
	ReasonTimeout     = "timeout"      // the call exceeded the signer timeout
	ReasonUnavailable = "unavailable"  // the KMS or HSM failed (5xx, unreachable, device error)
)

// UnavailableError is how every signer says "the CA key cannot sign right
// now; try again later". It wraps ErrUnavailable and the cause.
//
// Error() is for logs and carries the full cause (key ARNs, endpoints, PKCS#11
// codes). Public() is what may be shown to a client: backend, reason and
// retry hint only.
type UnavailableError struct {
	Backend    string        // pkcs11, awskms, gcpkms
	Reason     string        // one of the Reason* constants
	RetryAfter time.Duration // when a call may succeed: the breaker's remaining open time, or the throttling backoff
	Err        error         // the cause (full detail; never shown to clients)
}

func (e *UnavailableError) Error() string {
	s := fmt.Sprintf("signer: CA key unavailable (%s: %s; retry in %v)", e.Backend, e.Reason, e.RetryAfter.Round(time.Millisecond))
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns ErrUnavailable and the cause, so errors.Is works with
// both (e.g. ErrThrottled, ErrTimeout).
func (e *UnavailableError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrUnavailable}
	}
	return []error{ErrUnavailable, e.Err}
}

// Public is the client-safe message: no key names, ARNs, account IDs,
// endpoints or backend error text.
func (e *UnavailableError) Public() string {
	return fmt.Sprintf("signer: CA key unavailable (%s: %s); retry in %v", e.Backend, e.Reason, e.RetryAfter.Round(time.Millisecond))
}

// ReasonOf returns the Reason of the *UnavailableError in err's chain, or
// "" if there is none.
func ReasonOf(err error) string {
	var ue *UnavailableError
	if errors.As(err, &ue) {
		return ue.Reason
	}
	return ""
}
