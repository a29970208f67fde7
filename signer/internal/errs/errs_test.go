package errs

import (
	"errors"
	"testing"
	"time"
)

func TestUnavailableError(t *testing.T) {
	cause := errors.New("arn:aws:kms:us-east-1:111122223333:key/x: KMSInternalException")
	e := &UnavailableError{Backend: "awskms", Reason: ReasonCircuitOpen, RetryAfter: 1500 * time.Millisecond, Err: cause}
	if !errors.Is(e, ErrUnavailable) || !errors.Is(e, cause) {
		t.Fatal("UnavailableError does not wrap ErrUnavailable and its cause")
	}
	if got, want := e.Error(), "signer: CA key unavailable (awskms: circuit_open; retry in 1.5s): arn:aws:kms:us-east-1:111122223333:key/x: KMSInternalException"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := e.Public(), "signer: CA key unavailable (awskms: circuit_open); retry in 1.5s"; got != want {
		t.Errorf("Public() = %q, want %q", got, want)
	}
}
