package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/internal/roles"
)

// FuzzParseCSR: arbitrary bytes never panic, every error wraps one
// InvalidArgument sentinel, and an accepted CSR satisfies the profile.
func FuzzParseCSR(f *testing.F) {
	f.Add(makeCSR(f, newP256(f), []string{testWLID.String()}))
	f.Add(makeCSR(f, newP256(f), nil))
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		csr, id, err := ParseCSR(der, testTD, DefaultMaxCSRBytes)
		if err != nil {
			if !errors.Is(err, ErrInvalidCSR) && !errors.Is(err, ErrInvalidID) && !errors.Is(err, ErrWeakKey) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if !id.MemberOf(testTD) || len(csr.URIs) != 1 || csr.URIs[0].String() != id.String() {
			t.Fatalf("accepted CSR with id %s uris %v", id, csr.URIs)
		}
		if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses) != 0 {
			t.Fatal("accepted CSR with extra SANs")
		}
		switch k := csr.PublicKey.(type) {
		case *ecdsa.PublicKey:
			if k.Curve != elliptic.P256() {
				t.Fatal("accepted non-P-256 key")
			}
		case *rsa.PublicKey:
			if k.N.BitLen() < MinRSABits {
				t.Fatal("accepted short RSA key")
			}
		default:
			t.Fatalf("accepted %T", k)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted CSR with bad signature: %v", err)
		}
	})
}

// FuzzSPIFFEID: for every string spiffeid.FromString accepts,
// ValidateWorkloadID never panics, never accepts a reserved or foreign ID,
// and the role helpers never match an ID it accepts.
func FuzzSPIFFEID(f *testing.F) {
	for _, s := range []string{
		"spiffe://example.org/ns/prod/sa/web", "spiffe://example.org/tier0/agent/a1",
		"spiffe://example.org/TIER0/admin", "spiffe://example.org", "spiffe://other.org/x",
		"spiffe://example.org/tier0x", "https://example.org/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return
		}
		if back, err := spiffeid.FromString(id.String()); err != nil || back != id {
			t.Fatalf("round trip %q -> %q: %v", s, id, err)
		}
		err = ValidateWorkloadID(testTD, id)
		_, isAgent := roles.AgentName(testTD, id)
		_, isNode := roles.NodeName(testTD, id)
		if err != nil {
			if !errors.Is(err, ErrInvalidID) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if !id.MemberOf(testTD) || id.Path() == "" || roles.IsReserved(id) || isAgent || isNode || id == roles.AdminID(testTD) || id == roles.AuditorID(testTD) {
			t.Fatalf("accepted %s", id)
		}
	})
}

// FuzzParseID: ParseID accepts exactly the SPIFFE IDs of at most
// MaxIDBytes, and its error never quotes more than a bounded part of the
// input, however long.
func FuzzParseID(f *testing.F) {
	f.Add("spiffe://example.org/w")
	f.Add("spiffe://example.org/" + strings.Repeat("a", MaxIDBytes))
	f.Add("spiffe://" + strings.Repeat("\xff", 300))
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		_, ref := spiffeid.FromString(s)
		if (err == nil) != (ref == nil && len(s) <= MaxIDBytes) {
			t.Fatalf("ParseID(%d bytes) = %v, spiffeid says %v", len(s), err, ref)
		}
		if err == nil {
			if id.String() != s {
				t.Fatalf("ParseID(%q) = %q", s, id)
			}
			return
		}
		if !errors.Is(err, ErrInvalidID) || len(err.Error()) > 1200 {
			t.Fatalf("error for %d bytes of input: %d bytes, %v", len(s), len(err.Error()), errors.Is(err, ErrInvalidID))
		}
	})
}
