package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/roles"
)

// ChallengeResponder answers a node attestor's challenge (x509pop signs
// the server's nonce); nil when the attestor sends none.
type ChallengeResponder func(challenge []byte) ([]byte, error)

// AttestAgent obtains the agent SVID by node attestation with attestor
// and its evidence (internal/nodeattest), answering challenges with
// respond. It returns the SVID and the selectors the server attested.
func AttestAgent(ctx context.Context, addrs []string, td spiffeid.TrustDomain, bundle x509bundle.Source, attestor string, evidence []byte, respond ChallengeResponder) (*x509svid.SVID, []string, error) {
	if attestor == "" || len(evidence) == 0 {
		return nil, nil, errors.New("client: attestor and evidence are required")
	}
	c, err := New(ctx, Config{Addrs: addrs, TrustDomain: td, Bundle: bundle})
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	csr, key, err := NewCSR(spiffeid.ID{})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Bootstrap().AttestAgent(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("client: attest agent: %w", err)
	}
	if err := stream.Send(&tier0v1.AttestAgentRequest{Params: &tier0v1.AttestAgentParams{Attestor: attestor, Evidence: evidence, Csr: csr}}); err != nil {
		_, rerr := stream.Recv() // the status says why
		return nil, nil, fmt.Errorf("client: attest agent: %w", errors.Join(err, rerr))
	}
	for range 4 {
		resp, err := stream.Recv()
		if err != nil {
			return nil, nil, fmt.Errorf("client: attest agent (%s): %w", attestor, err)
		}
		if ch := resp.GetChallenge(); len(ch) > 0 {
			if respond == nil {
				return nil, nil, fmt.Errorf("client: attest agent: the %s attestor sent a challenge this agent cannot answer", attestor)
			}
			ans, err := respond(ch)
			if err != nil {
				return nil, nil, fmt.Errorf("client: attest agent: challenge: %w", err)
			}
			if err := stream.Send(&tier0v1.AttestAgentRequest{ChallengeResponse: ans}); err != nil {
				return nil, nil, fmt.Errorf("client: attest agent: %w", err)
			}
			continue
		}
		_ = stream.CloseSend()
		svid, err := ParseChain(resp.GetChain(), key, bundle)
		if err != nil {
			return nil, nil, err
		}
		if _, ok := roles.AgentName(td, svid.ID); !ok {
			return nil, nil, fmt.Errorf("client: server issued %q, not an agent id of %q", svid.ID, td)
		}
		if resp.GetSpiffeId() != svid.ID.String() {
			return nil, nil, fmt.Errorf("client: server says %q but the svid is for %q", resp.GetSpiffeId(), svid.ID)
		}
		return svid, resp.GetSelectors(), nil
	}
	return nil, nil, errors.New("client: attest agent: too many challenges")
}
