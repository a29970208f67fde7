package ca

import (
	"errors"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestRoleIDs(t *testing.T) {
	a, err := AgentID(testTD, "host-1")
	if err != nil || a.String() != "spiffe://example.org/tier0/agent/host-1" {
		t.Errorf("AgentID = %s, %v", a, err)
	}
	n, err := NodeID(testTD, "n1")
	if err != nil || n.String() != "spiffe://example.org/tier0/node/n1" {
		t.Errorf("NodeID = %s, %v", n, err)
	}
	if s := AdminID(testTD).String(); s != "spiffe://example.org/tier0/admin" {
		t.Errorf("AdminID = %s", s)
	}
	if s := AuditorID(testTD).String(); s != "spiffe://example.org/tier0/auditor" {
		t.Errorf("AuditorID = %s", s)
	}
	for name, want := range map[string]string{
		"a/b": `ca: agent name "a/b": path segment characters are limited to letters, numbers, dots, dashes, and underscores: invalid spiffe id`,
		"":    `ca: agent name "": path cannot contain empty segments: invalid spiffe id`,
		"..":  `ca: agent name "..": path cannot contain dot segments: invalid spiffe id`,
	} {
		if _, err := AgentID(testTD, name); err == nil || err.Error() != want || !errors.Is(err, ErrInvalidID) {
			t.Errorf("AgentID(%q): got %v\nwant %s", name, err, want)
		}
	}
}

func TestRoleNames(t *testing.T) {
	tests := []struct {
		id          string
		agent, node string
	}{
		{"spiffe://example.org/tier0/agent/a1", "a1", ""},
		{"spiffe://example.org/tier0/node/n1", "", "n1"},
		{"spiffe://example.org/tier0/agent/a1/x", "", ""},
		{"spiffe://example.org/tier0/agent", "", ""},
		{"spiffe://example.org/tier0/agentx/a1", "", ""},
		{"spiffe://example.org/x/tier0/agent/a1", "", ""},
		{"spiffe://example.org/TIER0/agent/a1", "", ""},
		{"spiffe://other.org/tier0/agent/a1", "", ""},
		{"spiffe://example.org.evil/tier0/node/n1", "", ""},
	}
	for _, tt := range tests {
		id := spiffeid.RequireFromString(tt.id)
		if got, ok := AgentName(testTD, id); got != tt.agent || ok != (tt.agent != "") {
			t.Errorf("AgentName(%s) = %q, %v", tt.id, got, ok)
		}
		if got, ok := NodeName(testTD, id); got != tt.node || ok != (tt.node != "") {
			t.Errorf("NodeName(%s) = %q, %v", tt.id, got, ok)
		}
	}
	if _, ok := AgentName(testTD, spiffeid.ID{}); ok {
		t.Error("zero ID matched")
	}
}

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
// enters ca: parsed IDs, role names, workload IDs, CSR URI SANs, and that
// the error never quotes the oversized input.
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

	// Agent and node names: the resulting ID is what is bounded.
	agentPrefix := len("spiffe://example.org/tier0/agent/")
	if _, err := AgentID(testTD, strings.Repeat("n", MaxIDBytes-agentPrefix)); err != nil {
		t.Errorf("AgentID at the limit: %v", err)
	}
	for _, n := range []int{MaxIDBytes - agentPrefix + 1, MaxIDBytes + 1, 1 << 20} {
		_, err := AgentID(testTD, strings.Repeat("n", n))
		if err == nil || !errors.Is(err, ErrInvalidID) || !strings.Contains(err.Error(), "limit of 2048 bytes") || len(err.Error()) > 200 {
			t.Errorf("AgentID(%d bytes) = %v", n, err)
		}
	}
	if _, err := NodeID(testTD, strings.Repeat("n", MaxIDBytes)); err == nil || !strings.Contains(err.Error(), "limit of 2048 bytes") {
		t.Errorf("NodeID(2048 bytes) = %v", err)
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
