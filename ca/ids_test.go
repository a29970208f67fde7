package ca

import (
	"errors"
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
