package ca

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestEntryTTLIsCeiling: a request above the grant's (entry's) TTL is
// clamped to it, for X509- and JWT-SVIDs; a shorter one is kept; one
// outside the server's bounds is still refused.
func TestEntryTTLIsCeiling(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Authorizer = grantAll(testAgent, 15*time.Minute, testWLID) })
	ctx := context.Background()
	for _, tc := range []struct {
		req, want time.Duration
	}{{60 * time.Minute, 15 * time.Minute}, {0, 15 * time.Minute}, {15 * time.Minute, 15 * time.Minute}} {
		res, err := e.ca.MintBatch(ctx, testAgent, []Request{{CSR: makeCSR(t, newP256(t), []string{testWLID.String()}), TTL: tc.req}})
		if err != nil || res[0].Err != nil {
			t.Fatal(err, res[0].Err)
		}
		if got := res[0].Cert.NotAfter.Sub(e.now); got != tc.want {
			t.Errorf("asked %s: lifetime %s, want %s", tc.req, got, tc.want)
		}
	}
	for _, bad := range []time.Duration{time.Minute, 2 * time.Hour} {
		res, err := e.ca.MintBatch(ctx, testAgent, []Request{{CSR: makeCSR(t, newP256(t), []string{testWLID.String()}), TTL: bad}})
		if err != nil || !errors.Is(res[0].Err, ErrInvalidTTL) {
			t.Fatalf("%s: %v %v", bad, err, res[0].Err)
		}
	}
	ttl, err := e.ca.resolveTTL(time.Hour, 20*time.Minute)
	if err != nil || ttl != 20*time.Minute {
		t.Fatalf("jwt path: %s %v", ttl, err)
	}
}
