// Package errs holds the sentinel errors shared by the signer backends.
// The signer package re-exports them; callers use errors.Is against the
// exported names there.
package errs

import "errors"

var (
	// ErrClosed is returned by Sign after Close.
	ErrClosed = errors.New("signer: closed")
	// ErrUnavailable is returned while the KMS circuit breaker is open.
	ErrUnavailable = errors.New("signer: kms unavailable (circuit open)")
	// ErrKMS is returned when a KMS call kept failing (5xx, unreachable)
	// after every retry.
	ErrKMS = errors.New("signer: kms error")
	// ErrThrottled is returned when the KMS kept throttling after every retry.
	ErrThrottled = errors.New("signer: kms throttled")
	// ErrChecksum is returned when a KMS response fails its integrity checksum.
	ErrChecksum = errors.New("signer: kms response checksum mismatch")
	// ErrTimeout is returned when a Sign call exceeds Options.Timeout.
	ErrTimeout = errors.New("signer: sign timed out")
)
