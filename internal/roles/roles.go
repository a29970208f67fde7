// Package roles defines the SPIFFE IDs of tier0's own roles and matches
// them, in one place for every package (ca, api, api/client, ha):
//
//	spiffe://TD/tier0/agent/NAME   an agent
//	spiffe://TD/tier0/node/NAME    a cluster node (raft, forwarding)
//	spiffe://TD/tier0/admin        the operator
//	spiffe://TD/tier0/auditor      the auditor
//
// Matching is structural: the trust domain must be exactly the expected
// one and the path exactly these segments (compared case-sensitively),
// never a prefix or substring of the ID's string. A role that takes a name
// has exactly one more, non-empty segment. The table of roles (specs) is
// the only place that knows the paths, so named operators and auditors can
// be added there.
//
// The package depends only on go-spiffe, internal/redact and the standard
// library.
package roles

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/tier0-ca/tier0/internal/redact"
)

// MaxIDBytes is the one length limit of a SPIFFE ID (the SPIFFE
// specification's 2,048 bytes; ca.MaxIDBytes is this constant): a role
// name that would make a longer ID is refused.
const MaxIDBytes = 2048

// Reserved is the first path segment of every role ID. Workload entries
// may never grant an ID under it (see IsReserved).
const Reserved = "tier0"

// Role is one of tier0's own roles.
type Role uint8

// The roles. None is the zero value: an ID that is no role.
const (
	None Role = iota
	Agent
	Node
	Admin
	Auditor
)

// spec describes one role's path: /tier0/<segment>[/NAME].
type spec struct {
	segment string
	named   bool // exactly one NAME segment follows; false: none may
	// optName: the role also exists with one NAME segment (a named
	// operator or auditor, enrolled with a join token, beside the
	// unnamed bootstrap credential of the data dir).
	optName bool
}

var specs = map[Role]spec{
	Agent:   {segment: "agent", named: true},
	Node:    {segment: "node", named: true},
	Admin:   {segment: "admin", optName: true},
	Auditor: {segment: "auditor", optName: true},
}

// String returns the role's path segment ("agent", "node", "admin",
// "auditor"), or "none".
func (r Role) String() string {
	if s, ok := specs[r]; ok {
		return s.segment
	}
	return "none"
}

var (
	// ErrInvalidName is wrapped by the constructors' errors: the trust
	// domain is empty, the name is not one valid path segment, or the role
	// takes no name (or needs one).
	ErrInvalidName = errors.New("invalid role name")
	// ErrNotNode is wrapped by the error of AuthorizeNode's authorizer.
	ErrNotNode = errors.New("not a tier0 node")
)

// ID returns the ID of role r in td. name must be one valid SPIFFE path
// segment for a named role (agent, node), empty or one segment for admin
// and auditor (a named operator), and empty for the others.
func ID(td spiffeid.TrustDomain, r Role, name string) (spiffeid.ID, error) {
	s, ok := specs[r]
	switch {
	case !ok:
		return spiffeid.ID{}, fmt.Errorf("roles: role %d: %w", r, ErrInvalidName)
	case td.IsZero():
		return spiffeid.ID{}, fmt.Errorf("roles: %s id: trust domain is empty: %w", r, ErrInvalidName)
	case !s.named && !s.optName && name != "":
		return spiffeid.ID{}, fmt.Errorf("roles: %s takes no name (got %q): %w", r, name, ErrInvalidName)
	case !s.named && name == "":
		return spiffeid.RequireFromSegments(td, Reserved, s.segment), nil
	}
	if len(name) > MaxIDBytes {
		return spiffeid.ID{}, fmt.Errorf("roles: %s name of %d bytes: its spiffe id would exceed the limit of %d bytes: %w", r, len(name), MaxIDBytes, ErrInvalidName)
	}
	id, err := spiffeid.FromSegments(td, Reserved, s.segment, name)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("roles: %s name %s: %w: %w", r, redact.Quote(name), err, ErrInvalidName)
	}
	if n := len(id.String()); n > MaxIDBytes {
		return spiffeid.ID{}, fmt.Errorf("roles: %s name of %d bytes: spiffe id of %d bytes exceeds the limit of %d bytes: %w", r, len(name), n, MaxIDBytes, ErrInvalidName)
	}
	return id, nil
}

// AgentID returns spiffe://TD/tier0/agent/NAME.
func AgentID(td spiffeid.TrustDomain, name string) (spiffeid.ID, error) {
	return ID(td, Agent, name)
}

// NodeID returns spiffe://TD/tier0/node/NAME.
func NodeID(td spiffeid.TrustDomain, name string) (spiffeid.ID, error) {
	return ID(td, Node, name)
}

// AdminID returns spiffe://TD/tier0/admin (the zero ID when td is zero).
func AdminID(td spiffeid.TrustDomain) spiffeid.ID {
	id, _ := ID(td, Admin, "")
	return id
}

// AuditorID returns spiffe://TD/tier0/auditor (the zero ID when td is zero).
func AuditorID(td spiffeid.TrustDomain) spiffeid.ID {
	id, _ := ID(td, Auditor, "")
	return id
}

// Parse reports which role id is in td, and its name for a named role.
// ok is false (and the role None) for any ID that is not exactly a role ID
// of td: another trust domain, a zero ID or trust domain, a path with a
// different case, an extra or missing segment.
func Parse(td spiffeid.TrustDomain, id spiffeid.ID) (r Role, name string, ok bool) {
	if td.IsZero() || id.IsZero() || !id.MemberOf(td) {
		return None, "", false
	}
	// "/tier0/seg[/name]" splits into ["", "tier0", seg[, name]].
	segs := strings.Split(id.Path(), "/")
	if len(segs) < 3 || segs[0] != "" || segs[1] != Reserved {
		return None, "", false
	}
	for r, s := range specs {
		if segs[2] != s.segment {
			continue
		}
		switch {
		case (s.named || s.optName) && len(segs) == 4 && segs[3] != "":
			return r, segs[3], true
		case !s.named && len(segs) == 3:
			return r, "", true
		}
		return None, "", false
	}
	return None, "", false
}

// is reports whether id is role r's ID in td, and its name.
func is(td spiffeid.TrustDomain, id spiffeid.ID, r Role) (name string, ok bool) {
	got, name, ok := Parse(td, id)
	if !ok || got != r {
		return "", false
	}
	return name, true
}

// AgentName reports NAME of spiffe://TD/tier0/agent/NAME.
func AgentName(td spiffeid.TrustDomain, id spiffeid.ID) (string, bool) { return is(td, id, Agent) }

// NodeName reports NAME of spiffe://TD/tier0/node/NAME.
func NodeName(td spiffeid.TrustDomain, id spiffeid.ID) (string, bool) { return is(td, id, Node) }

// AuthorizeNode is a go-spiffe authorizer that accepts only node IDs of td
// (mTLS between nodes, and clients checking that they talk to a node).
func AuthorizeNode(td spiffeid.TrustDomain) tlsconfig.Authorizer {
	return tlsconfig.AdaptMatcher(func(id spiffeid.ID) error {
		if _, ok := NodeName(td, id); !ok {
			return fmt.Errorf("roles: %s is %w of %q", redact.Quote(id.String()), ErrNotNode, td)
		}
		return nil
	})
}

// IsReserved reports whether id's first path segment is Reserved, compared
// case-insensitively, so that a workload entry can grant neither
// /tier0/admin nor /TIER0/admin.
func IsReserved(id spiffeid.ID) bool {
	first, _, _ := strings.Cut(strings.TrimPrefix(id.Path(), "/"), "/")
	return strings.EqualFold(first, Reserved)
}
