package ca

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/internal/redact"
)

// ReservedSegment is the first path segment reserved for tier0's own roles
// (agents, nodes, admin, auditor). Workload entries can never grant it.
const ReservedSegment = "tier0"

// Length limits of identifiers, from the SPIFFE ID specification: IDs up to
// 2,048 bytes must be supported, trust domain names are at most 255. tier0
// refuses anything longer everywhere an ID enters (registration entries,
// agent and node names, mint requests, a CSR's URI SAN, a JWT-SVID's sub,
// federation) so that no log line or error grows with an attacker's input.
const (
	MaxIDBytes          = 2048
	MaxTrustDomainBytes = 255
)

// ParseID parses s as a SPIFFE ID, refusing more than MaxIDBytes before it
// parses anything. The error wraps ErrInvalidID and quotes at most
// redact.MaxEcho bytes of s.
func ParseID(s string) (spiffeid.ID, error) {
	if err := checkIDLength(s); err != nil {
		return spiffeid.ID{}, err
	}
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("ca: spiffe id %s: %w: %w", redact.Quote(s), err, ErrInvalidID)
	}
	return id, nil
}

// ParseTrustDomain parses a trust domain name, refusing more than
// MaxTrustDomainBytes first. The error wraps ErrInvalidID.
func ParseTrustDomain(s string) (spiffeid.TrustDomain, error) {
	if len(s) > MaxTrustDomainBytes {
		return spiffeid.TrustDomain{}, fmt.Errorf("ca: trust domain of %d bytes exceeds the limit of %d bytes: %w", len(s), MaxTrustDomainBytes, ErrInvalidID)
	}
	td, err := spiffeid.TrustDomainFromString(s)
	if err != nil {
		return spiffeid.TrustDomain{}, fmt.Errorf("ca: trust domain %s: %w: %w", redact.Quote(s), err, ErrInvalidID)
	}
	return td, nil
}

// checkIDLength is the one length rule for SPIFFE IDs.
func checkIDLength(id string) error {
	if len(id) > MaxIDBytes {
		return fmt.Errorf("ca: spiffe id of %d bytes exceeds the limit of %d bytes: %w", len(id), MaxIDBytes, ErrInvalidID)
	}
	return nil
}

// ValidateWorkloadID checks that id may be issued to a workload: it is a
// well-formed SPIFFE ID in td, has a non-empty path, and its first path
// segment is not the reserved "tier0" (compared case-insensitively, so that
// "/TIER0/admin" cannot be granted either).
func ValidateWorkloadID(td spiffeid.TrustDomain, id spiffeid.ID) error {
	if err := validateMember(td, id); err != nil {
		return err
	}
	if isReserved(id) {
		return fmt.Errorf("ca: spiffe id %s uses reserved path /%s: %w", redact.Quote(id.String()), ReservedSegment, ErrInvalidID)
	}
	return nil
}

// validateMember checks the length, membership and a non-empty path, but
// allows reserved paths (used by MintFor).
func validateMember(td spiffeid.TrustDomain, id spiffeid.ID) error {
	if err := checkIDLength(id.String()); err != nil {
		return err
	}
	switch {
	case td.IsZero():
		return fmt.Errorf("ca: trust domain is empty: %w", ErrInvalidID)
	case id.IsZero():
		return fmt.Errorf("ca: spiffe id is empty: %w", ErrInvalidID)
	case !id.MemberOf(td):
		return fmt.Errorf("ca: spiffe id %s is not in trust domain %q: %w", redact.Quote(id.String()), td, ErrInvalidID)
	case id.Path() == "":
		return fmt.Errorf("ca: spiffe id %s has no path: %w", redact.Quote(id.String()), ErrInvalidID)
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
	if len(name) > MaxIDBytes {
		return spiffeid.ID{}, fmt.Errorf("ca: %s name of %d bytes: its spiffe id would exceed the limit of %d bytes: %w", role, len(name), MaxIDBytes, ErrInvalidID)
	}
	id, err := spiffeid.FromSegments(td, ReservedSegment, role, name)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("ca: %s name %s: %w: %w", role, redact.Quote(name), err, ErrInvalidID)
	}
	if err := checkIDLength(id.String()); err != nil {
		return spiffeid.ID{}, fmt.Errorf("ca: %s name of %d bytes: %w", role, len(name), err)
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
