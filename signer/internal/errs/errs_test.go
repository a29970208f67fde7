package errs

import (
	"errors"
	"testing"
	"time"
)

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://admin:hunter2@kms.example.com":        "https://kms.example.com",
		"https://admin:hun ter2@kms.example.com/x?y=1": "https://kms.example.com/x?y=1",
		"https://a@b:c@kms.example.com":                "https://kms.example.com",
		"admin:hunter2@127.0.0.1:4600":                 "127.0.0.1:4600",
		"https://kms.example.com/a@b":                  "https://kms.example.com/a@b",
		"127.0.0.1:4600":                               "127.0.0.1:4600",
		"":                                             "",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

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
