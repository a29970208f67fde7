package ca

import (
	"errors"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestValidateWorkloadID(t *testing.T) {
	tests := []struct{ id, want string }{
		{"spiffe://example.org/ns/prod/sa/web", ""},
		{"spiffe://example.org/tier0x/a", ""},
		{"spiffe://example.org/a/tier0", ""},
		{"spiffe://example.org/tier0", `ca: spiffe id "spiffe://example.org/tier0" uses reserved path /tier0: invalid spiffe id`},
		{"spiffe://example.org/Tier0/node/n", `ca: spiffe id "spiffe://example.org/Tier0/node/n" uses reserved path /tier0: invalid spiffe id`},
		{"spiffe://example.org", `ca: spiffe id "spiffe://example.org" has no path: invalid spiffe id`},
		{"spiffe://example.com/a", `ca: spiffe id "spiffe://example.com/a" is not in trust domain "example.org": invalid spiffe id`},
	}
	for _, tt := range tests {
		err := ValidateWorkloadID(testTD, spiffeid.RequireFromString(tt.id))
		if (tt.want == "" && err != nil) || (tt.want != "" && (err == nil || err.Error() != tt.want || !errors.Is(err, ErrInvalidID))) {
			t.Errorf("%s: got %v\nwant %q", tt.id, err, tt.want)
		}
	}
	if err := ValidateWorkloadID(testTD, spiffeid.ID{}); err == nil || err.Error() != "ca: spiffe id is empty: invalid spiffe id" {
		t.Errorf("zero id: %v", err)
	}
}

// TestIDLengthLimit checks the one 2,048-byte rule at every way an ID
// enters ca: parsed IDs, workload IDs, CSR URI SANs (role names:
// internal/roles TestNameLength), and that the error never quotes the
// oversized input.
func TestIDLengthLimit(t *testing.T) {
	prefix := "spiffe://example.org/"
	atLimit := prefix + strings.Repeat("a", MaxIDBytes-len(prefix))
	over := atLimit + "b"
	if id, err := ParseID(atLimit); err != nil || ValidateWorkloadID(testTD, id) != nil {
		t.Fatalf("ParseID/ValidateWorkloadID at the limit: %v", err)
	}
	const wantOver = "ca: spiffe id of 2049 bytes exceeds the limit of 2048 bytes: invalid spiffe id"
	if _, err := ParseID(over); err == nil || err.Error() != wantOver || !errors.Is(err, ErrInvalidID) {
		t.Errorf("ParseID(2049 bytes) = %v, want %s", err, wantOver)
	}
	if err := ValidateWorkloadID(testTD, spiffeid.RequireFromString(over)); err == nil || err.Error() != wantOver {
		t.Errorf("ValidateWorkloadID(2049 bytes) = %v, want %s", err, wantOver)
	}
	huge := prefix + strings.Repeat("a", 1<<20)
	if _, err := ParseID(huge); err == nil || len(err.Error()) > 200 {
		t.Errorf("ParseID(1 MiB) = %.300v", err)
	}
	// A bad ID is quoted, truncated.
	if _, err := ParseID("https://" + strings.Repeat("x", 1000)); err == nil || len(err.Error()) > 300 || !strings.Contains(err.Error(), "(1008 bytes)") {
		t.Errorf("ParseID(bad) = %v", err)
	}

	// A CSR whose URI SAN is over the limit.
	key := newP256(t)
	if _, _, err := ParseCSR(makeCSR(t, key, []string{over}), testTD, 0); err == nil || !errors.Is(err, ErrInvalidID) ||
		err.Error() != "ca: csr URI SAN: "+wantOver {
		t.Errorf("ParseCSR(2049-byte URI SAN) = %v", err)
	}
	if _, _, err := ParseCSR(makeCSR(t, key, []string{atLimit}), testTD, 0); err != nil {
		t.Errorf("ParseCSR(2048-byte URI SAN) = %v", err)
	}
}

func TestParseTrustDomain(t *testing.T) {
	if td, err := ParseTrustDomain(strings.Repeat("a", MaxTrustDomainBytes)); err != nil || td.Name() != strings.Repeat("a", 255) {
		t.Errorf("ParseTrustDomain(255 bytes) = %v, %v", td, err)
	}
	const want = "ca: trust domain of 256 bytes exceeds the limit of 255 bytes: invalid spiffe id"
	if _, err := ParseTrustDomain(strings.Repeat("a", 256)); err == nil || err.Error() != want {
		t.Errorf("ParseTrustDomain(256 bytes) = %v, want %s", err, want)
	}
	if _, err := ParseTrustDomain("Bad Domain"); err == nil || !errors.Is(err, ErrInvalidID) {
		t.Errorf("ParseTrustDomain(bad) = %v", err)
	}
}
