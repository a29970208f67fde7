package api

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/nodeattest"
)

// failingAttestor fails every attestation with err.
type failingAttestor struct{ err error }

func (failingAttestor) Name() string { return nodeattest.AWSIID }
func (a failingAttestor) Attest(context.Context, []byte, nodeattest.ChallengeFunc) (nodeattest.Result, error) {
	return nodeattest.Result{}, a.err
}

type oneAttestor struct{ a nodeattest.Attestor }

func (o *oneAttestor) Get(name string) (nodeattest.Attestor, bool) {
	return o.a, name == nodeattest.AWSIID
}

// TestAttestAgentLookupFailure: a platform API that does not answer makes
// the attestation Unavailable (the agent retries) with a decision row
// naming the API call; an unreachable JWKS (no lookup) is a decision row
// too (every refusal is, whatever its code), shown as a failure.
func TestAttestAgentLookupFailure(t *testing.T) {
	dec := decisionsFake{rows: make(chan recorded, 10)}
	att := &oneAttestor{}
	f := newFixture(t, func(c *Config) {
		c.NodeAttestors, c.Decisions = att, dec
		c.Attestations = recorderFunc(func(context.Context, ha.Attestation) error { return nil })
	})
	ctx := context.Background()
	att.a = failingAttestor{fmt.Errorf("%w: %w: aws_iid: EC2 DescribeInstances i-0abc in us-east-1: connection refused", nodeattest.ErrUnavailable, nodeattest.ErrLookup)}
	_, _, err := client.AttestAgent(ctx, []string{f.addr}, testTD, f.bundle, nodeattest.AWSIID, []byte(`{}`), nil)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("lookup failure: %v", err)
	}
	select {
	case r := <-dec.rows:
		if r.allowed || !strings.Contains(r.reason, "DescribeInstances i-0abc") {
			t.Fatalf("decision %+v", r)
		}
	default:
		t.Fatal("no decision row for a failed lookup")
	}
	att.a = failingAttestor{fmt.Errorf("%w: jwks_url: connection refused", nodeattest.ErrUnavailable)}
	if _, _, err := client.AttestAgent(ctx, []string{f.addr}, testTD, f.bundle, nodeattest.AWSIID, []byte(`{}`), nil); status.Code(err) != codes.Unavailable {
		t.Fatalf("jwks down: %v", err)
	}
	select {
	case r := <-dec.rows:
		if r.allowed || r.code != "Unavailable" || !strings.Contains(r.reason, "jwks_url: connection refused") {
			t.Fatalf("decision %+v", r)
		}
	default:
		t.Fatal("no decision row for an unreachable JWKS")
	}
}
