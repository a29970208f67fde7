package ca

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestPerItemFailuresAreRateLimited: under an outage every item fails
// alike; the log gets one line per kind of failure, not one per item.
func TestPerItemFailuresAreRateLimited(t *testing.T) {
	e := newEnv(t, nil)
	e.j.err = errors.New("journal write failed: no space left on device")
	ctx := context.Background()
	good := makeCSR(t, newP256(t), []string{testWLID.String()})
	denied := makeCSR(t, newP256(t), []string{"spiffe://example.org/not-granted"})
	for range 200 {
		res, err := e.ca.MintBatch(ctx, testAgent, []Request{{CSR: good}, {CSR: denied}})
		if err != nil || res[0].Err == nil || !errors.Is(res[1].Err, ErrPermissionDenied) {
			t.Fatalf("MintBatch = %v, %v", res, err)
		}
	}
	logs := e.logs.String()
	if n := strings.Count(logs, "journal commit failed"); n != 1 {
		t.Errorf("%d 'journal commit failed' lines for 200 failed commits, want 1:\n%s", n, logs)
	}
	if n := strings.Count(logs, "svid denied"); n != 1 {
		t.Errorf("%d 'svid denied' lines for 200 denied items, want 1", n)
	}
	// Another kind of failure is a state change: logged at once.
	e.j.err = context.DeadlineExceeded
	if _, err := e.ca.MintBatch(ctx, testAgent, []Request{{CSR: good}}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(e.logs.String(), "journal commit failed"); n != 2 {
		t.Errorf("%d 'journal commit failed' lines after the failure changed, want 2", n)
	}
}
