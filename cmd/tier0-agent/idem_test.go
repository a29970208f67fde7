package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
)

// TestAttemptsReusedUntilAnswered: a request whose outcome is unknown is
// retried with the same CSR and idempotency key (so the server can
// answer with what it committed); once answered, or when it is too old,
// a new one is made.
func TestAttemptsReusedUntilAnswered(t *testing.T) {
	var a attempts
	id := spiffeid.RequireFromString("spiffe://example.org/web")
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	first, err := a.get(id, now)
	if err != nil || len(first.idem) != 16 || len(first.csr) == 0 || first.key == nil {
		t.Fatalf("get: %+v, %v", first, err)
	}
	again, _ := a.get(id, now.Add(time.Minute))
	if !bytes.Equal(again.csr, first.csr) || !bytes.Equal(again.idem, first.idem) {
		t.Fatal("a retry did not reuse the unanswered request")
	}
	a.answered(id.String())
	if next, _ := a.get(id, now.Add(time.Minute)); bytes.Equal(next.idem, first.idem) || bytes.Equal(next.csr, first.csr) {
		t.Fatal("an answered request was reused")
	}
	if old, _ := a.get(id, now.Add(time.Minute+attemptReuse)); bytes.Equal(old.idem, first.idem) {
		t.Fatal("a request older than attemptReuse was reused")
	}
	for c, want := range map[codes.Code]bool{codes.Unavailable: true, codes.DeadlineExceeded: true, codes.PermissionDenied: false, codes.InvalidArgument: false} {
		if unknownOutcome(c) != want {
			t.Errorf("unknownOutcome(%v) = %v", c, !want)
		}
	}
}
