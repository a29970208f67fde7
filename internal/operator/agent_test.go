package operator

import (
	"strings"
	"testing"
)

// TestAgentName: --agent takes a name or the agent's SPIFFE ID in the
// server's trust domain; anything else is refused with the reason.
func TestAgentName(t *testing.T) {
	for _, tc := range []struct {
		td, in, name, id, err string
	}{
		{"example.org", "host-1", "host-1", "spiffe://example.org/tier0/agent/host-1", ""},
		{"example.org", "spiffe://example.org/tier0/agent/host-1", "host-1", "spiffe://example.org/tier0/agent/host-1", ""},
		{"example.org", "SPIFFE://example.org/tier0/agent/host-1", "", "", "scheme is missing or invalid"},
		{"example.org", "spiffe://other.org/tier0/agent/host-1", "", "", "trust domain other.org is not the server's (example.org)"},
		{"example.org", "spiffe://example.org/tier0/node/n1", "", "", "not an agent ID"},
		{"example.org", "spiffe://example.org/tier0/agent", "", "", "not an agent ID"},
		{"example.org", "spiffe://example.org/tier0/agent/a/b", "", "", "not an agent ID"},
		{"example.org", "spiffe://example.org/web", "", "", "not an agent ID"},
		{"example.org", "spiffe://example.org/tier0/agent/a b", "", "", "--agent"},
		{"", "spiffe://example.org/tier0/agent/host-1", "", "", "trust domain is unknown"},
		{"", "host-1", "host-1", "", "trust domain is unknown"},
		{"example.org", "", "", "", ""},
	} {
		name, err := AgentName(tc.td, tc.in)
		switch {
		case tc.name != "" && (err != nil || name != tc.name):
			t.Errorf("agentName(%q, %q) = %q, %v; want %q", tc.td, tc.in, name, err, tc.name)
		case tc.name == "" && tc.in != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("agentName(%q, %q) = %q, %v; want an error with %q", tc.td, tc.in, name, err, tc.err)
		}
		id, err := AgentID(tc.td, tc.in)
		switch {
		case tc.id != "" && (err != nil || id != tc.id):
			t.Errorf("agentID(%q, %q) = %q, %v; want %q", tc.td, tc.in, id, err, tc.id)
		case tc.id == "" && tc.in != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("agentID(%q, %q) = %q, %v; want an error with %q", tc.td, tc.in, id, err, tc.err)
		case tc.in == "" && (err != nil || id != ""):
			t.Errorf("agentID(%q, \"\") = %q, %v", tc.td, id, err)
		}
	}
}
