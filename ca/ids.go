package ca

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// ReservedSegment is the first path segment reserved for tier0's own roles
// (agents, nodes, admin, auditor). Workload entries can never grant it.
const ReservedSegment = "tier0"

// ValidateWorkloadID checks that id may be issued to a workload: it is a
// well-formed SPIFFE ID in td, has a non-empty path, and its first path
// segment is not the reserved "tier0" (compared case-insensitively, so that
// "/TIER0/admin" cannot be granted either).
func ValidateWorkloadID(td spiffeid.TrustDomain, id spiffeid.ID) error {
	if err := validateMember(td, id); err != nil {
		return err
	}
	if isReserved(id) {
		return fmt.Errorf("ca: spiffe id %q uses reserved path /%s: %w", id, ReservedSegment, ErrInvalidID)
	}
	return nil
}

// validateMember checks membership and a non-empty path, but allows reserved
// paths (used by MintFor).
func validateMember(td spiffeid.TrustDomain, id spiffeid.ID) error {
	switch {
	case td.IsZero():
		return fmt.Errorf("ca: trust domain is empty: %w", ErrInvalidID)
	case id.IsZero():
		return fmt.Errorf("ca: spiffe id is empty: %w", ErrInvalidID)
	case !id.MemberOf(td):
		return fmt.Errorf("ca: spiffe id %q is not in trust domain %q: %w", id, td, ErrInvalidID)
	case id.Path() == "":
		return fmt.Errorf("ca: spiffe id %q has no path: %w", id, ErrInvalidID)
	}
	return nil
}

func isReserved(id spiffeid.ID) bool {
	first, _, _ := strings.Cut(strings.TrimPrefix(id.Path(), "/"), "/")
	return strings.EqualFold(first, ReservedSegment)
}

// AgentID returns spiffe://TD/tier0/agent/NAME; NAME must be one valid path
// segment.
func AgentID(td spiffeid.TrustDomain, name string) (spiffeid.ID, error) {
	return roleID(td, "agent", name)
}

// NodeID returns spiffe://TD/tier0/node/NODE; NODE must be one valid path
// segment.
func NodeID(td spiffeid.TrustDomain, node string) (spiffeid.ID, error) {
	return roleID(td, "node", node)
}

// AdminID returns spiffe://TD/tier0/admin.
func AdminID(td spiffeid.TrustDomain) spiffeid.ID {
	return spiffeid.RequireFromSegments(td, ReservedSegment, "admin")
}

// AuditorID returns spiffe://TD/tier0/auditor.
func AuditorID(td spiffeid.TrustDomain) spiffeid.ID {
	return spiffeid.RequireFromSegments(td, ReservedSegment, "auditor")
}

// AgentName reports the NAME of an agent ID spiffe://TD/tier0/agent/NAME.
// The match is structural (exact trust domain, exact segments), never a
// substring or prefix match.
func AgentName(td spiffeid.TrustDomain, id spiffeid.ID) (string, bool) {
	return roleName(td, id, "agent")
}

// NodeName reports the NODE of a node ID spiffe://TD/tier0/node/NODE.
func NodeName(td spiffeid.TrustDomain, id spiffeid.ID) (string, bool) {
	return roleName(td, id, "node")
}

func roleID(td spiffeid.TrustDomain, role, name string) (spiffeid.ID, error) {
	if td.IsZero() {
		return spiffeid.ID{}, fmt.Errorf("ca: %s id: trust domain is empty: %w", role, ErrInvalidID)
	}
	id, err := spiffeid.FromSegments(td, ReservedSegment, role, name)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("ca: %s name %q: %w: %w", role, name, err, ErrInvalidID)
	}
	return id, nil
}

func roleName(td spiffeid.TrustDomain, id spiffeid.ID, role string) (string, bool) {
	if td.IsZero() || !id.MemberOf(td) {
		return "", false
	}
	segs := strings.Split(id.Path(), "/")
	// "/tier0/role/name" splits into ["", "tier0", role, name].
	if len(segs) != 4 || segs[0] != "" || segs[1] != ReservedSegment || segs[2] != role || segs[3] == "" {
		return "", false
	}
	return segs[3], true
}
