package client

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// ErrNotNode is returned (wrapped) by the authorizer of AuthorizeNode when
// the server presents an ID that is not a tier0 node of the trust domain.
var ErrNotNode = errors.New("server is not a tier0 node")

// AuthorizeNode returns an authorizer that accepts only tier0 node IDs,
// spiffe://td/tier0/node/<id>: the same trust domain and exactly the three
// path segments "tier0", "node" and one non-empty node name. The match is
// structural, never a substring or prefix comparison.
func AuthorizeNode(td spiffeid.TrustDomain) tlsconfig.Authorizer {
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		if _, ok := NodeName(td, id); !ok {
			return fmt.Errorf("client: %q: %w of %q", id, ErrNotNode, td)
		}
		return nil
	}
}

// NodeName reports the node name of spiffe://td/tier0/node/<name>.
func NodeName(td spiffeid.TrustDomain, id spiffeid.ID) (string, bool) {
	return roleName(td, id, "node")
}

// AgentName reports the agent name of spiffe://td/tier0/agent/<name>.
func AgentName(td spiffeid.TrustDomain, id spiffeid.ID) (string, bool) {
	return roleName(td, id, "agent")
}

func roleName(td spiffeid.TrustDomain, id spiffeid.ID, role string) (string, bool) {
	if td.IsZero() || id.IsZero() || id.TrustDomain() != td {
		return "", false
	}
	// "/tier0/<role>/<name>" splits into ["", "tier0", role, name].
	segs := strings.Split(id.Path(), "/")
	if len(segs) != 4 || segs[0] != "" || segs[1] != "tier0" || segs[2] != role || segs[3] == "" {
		return "", false
	}
	return segs[3], true
}
