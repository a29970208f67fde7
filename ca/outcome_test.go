package ca

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// failureAuthz is fakeAuthz that hears failures after an allow.
type failureAuthz struct {
	*fakeAuthz
	failed []error
}

func (a *failureAuthz) IssueFailed(_, _ spiffeid.ID, _ Grant, err error) {
	a.failed = append(a.failed, err)
}

// TestAllowedButNotIssuedIsReported: the Authorizer hears of an allowed
// request that failed (journal, TTL), and not of issued or denied ones.
func TestAllowedButNotIssuedIsReported(t *testing.T) {
	var fa *failureAuthz
	e := newEnv(t, func(c *Config) {
		fa = &failureAuthz{fakeAuthz: c.Authorizer.(*fakeAuthz)}
		c.Authorizer = fa
	})
	ctx := context.Background()
	good := makeCSR(t, newP256(t), []string{testWLID.String()})
	denied := makeCSR(t, newP256(t), []string{"spiffe://example.org/not-granted"})
	if _, err := e.ca.MintBatch(ctx, testAgent, []Request{{CSR: good}, {CSR: denied}}); err != nil {
		t.Fatal(err)
	}
	if len(fa.failed) != 0 {
		t.Fatalf("failures reported for an issued and a denied item: %v", fa.failed)
	}
	e.j.err = errors.New("no space left on device")
	if _, err := e.ca.MintBatch(ctx, testAgent, []Request{{CSR: good}, {CSR: good, TTL: 1}}); err != nil {
		t.Fatal(err)
	}
	if len(fa.failed) != 2 || !errors.Is(fa.failed[0], ErrInvalidTTL) || !strings.HasSuffix(fa.failed[1].Error(), "no space left on device") {
		t.Fatalf("failures reported: %v, want the TTL's and the journal's", fa.failed)
	}
	if got := FailureClass(fmt.Errorf("ca: sign: kms arn:aws:kms:x: %w", ErrIssuer)); got != "issuer error" {
		t.Fatalf("FailureClass = %q", got)
	}
}
