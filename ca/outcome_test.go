package ca

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestAllowedButNotIssuedKeepsTheEntry: a result says which entry
// authorized it, also when it failed after that (journal, TTL), and not
// for a denied item, so the decision log tells a failure from a denial.
func TestAllowedButNotIssuedKeepsTheEntry(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	good := makeCSR(t, newP256(t), []string{testWLID.String()})
	denied := makeCSR(t, newP256(t), []string{"spiffe://example.org/not-granted"})
	res, err := e.ca.MintBatch(ctx, testAgent, []Request{{CSR: good}, {CSR: denied}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || res[0].EntryID == "" || res[1].Err == nil || res[1].EntryID != "" || res[1].ID.String() != "spiffe://example.org/not-granted" {
		t.Fatalf("issued and denied: %+v / %+v", res[0], res[1])
	}
	e.j.err = errors.New("no space left on device")
	res, err = e.ca.MintBatch(ctx, testAgent, []Request{{CSR: good}, {CSR: good, TTL: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(res[0].Err.Error(), "no space left on device") || res[0].EntryID == "" || res[0].ID != testWLID ||
		!errors.Is(res[1].Err, ErrInvalidTTL) || res[1].EntryID == "" {
		t.Fatalf("failures: %+v / %+v, want the journal's and the TTL's with their entry", res[0], res[1])
	}
	if got := FailureClass(fmt.Errorf("ca: sign: kms arn:aws:kms:x: %w", ErrIssuer)); got != "issuer error" {
		t.Fatalf("FailureClass = %q", got)
	}
}
