package operator

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/tier0-ca/tier0/internal/roles"
)

// --agent means an agent everywhere in the CLI: its NAME, or its full
// SPIFFE ID spiffe://TD/tier0/agent/NAME (as logs, audit records and
// decisions show it), which must be in the server's trust domain.

// AgentName returns the name --agent s means in trust domain td: s itself
// when it is not a SPIFFE ID (the server checks names), else the NAME of
// spiffe://td/tier0/agent/NAME. Any other ID, or another trust domain, is
// refused.
func AgentName(td, s string) (string, error) {
	if !strings.HasPrefix(strings.ToLower(s), "spiffe://") {
		return s, nil
	}
	id, err := spiffeid.FromString(s)
	if err != nil {
		return "", fmt.Errorf("--agent %q: %w", s, err)
	}
	if td == "" {
		return "", fmt.Errorf("--agent %s: the server's trust domain is unknown (no DATA/server.json): pass --trust-domain-of-server, or the agent NAME", id)
	}
	want, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		return "", fmt.Errorf("--agent: trust domain %q: %w", td, err)
	}
	if !id.MemberOf(want) {
		return "", fmt.Errorf("--agent %s: trust domain %s is not the server's (%s)", id, id.TrustDomain().Name(), want.Name())
	}
	r, name, ok := roles.Parse(want, id)
	if !ok || r != roles.Agent {
		return "", fmt.Errorf("--agent %s: not an agent ID (want spiffe://%s/tier0/agent/NAME, or the NAME)", id, want.Name())
	}
	return name, nil
}

// AgentID returns the SPIFFE ID --agent s means in trust domain td ("" for
// ""), for filters that match agent IDs (audit records and decisions).
func AgentID(td, s string) (string, error) {
	if s == "" {
		return "", nil
	}
	name, err := AgentName(td, s)
	if err != nil {
		return "", err
	}
	t, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		return "", fmt.Errorf("--agent %s: the server's trust domain is unknown (%w): pass --trust-domain-of-server", s, err)
	}
	id, err := roles.AgentID(t, name)
	if err != nil {
		return "", fmt.Errorf("--agent: %w", err)
	}
	return id.String(), nil
}
