package ca

import (
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/internal/redact"
	"github.com/tier0-ca/tier0/internal/roles"
)

// Length limits of identifiers, from the SPIFFE ID specification: IDs up to
// 2,048 bytes must be supported, trust domain names are at most 255. tier0
// refuses anything longer everywhere an ID enters (registration entries,
// agent and node names, mint requests, a CSR's URI SAN, a JWT-SVID's sub,
// federation) so that no log line or error grows with an attacker's input.
// (internal/roles applies the same limit to role IDs.)
const (
	MaxIDBytes          = roles.MaxIDBytes
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
// segment is not the reserved "tier0" of tier0's own roles (compared
// case-insensitively, so that "/TIER0/admin" cannot be granted either; see
// internal/roles).
func ValidateWorkloadID(td spiffeid.TrustDomain, id spiffeid.ID) error {
	if err := validateMember(td, id); err != nil {
		return err
	}
	if roles.IsReserved(id) {
		return fmt.Errorf("ca: spiffe id %s uses reserved path /%s: %w", redact.Quote(id.String()), roles.Reserved, ErrInvalidID)
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
