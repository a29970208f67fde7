package roles

import (
	"errors"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func TestConstructors(t *testing.T) {
	tests := []struct {
		role          Role
		name, want    string
		wantErrString string
	}{
		{role: Agent, name: "host-1", want: "spiffe://example.org/tier0/agent/host-1"},
		{role: Node, name: "n1", want: "spiffe://example.org/tier0/node/n1"},
		{role: Node, name: "a.b-c_D", want: "spiffe://example.org/tier0/node/a.b-c_D"},
		{role: Admin, want: "spiffe://example.org/tier0/admin"},
		{role: Auditor, want: "spiffe://example.org/tier0/auditor"},
		{role: Agent, name: "", wantErrString: `roles: agent name "": path cannot contain empty segments: invalid role name`},
		{role: Agent, name: "a/b", wantErrString: `roles: agent name "a/b": path segment characters are limited to letters, numbers, dots, dashes, and underscores: invalid role name`},
		{role: Node, name: "..", wantErrString: `roles: node name "..": path cannot contain dot segments: invalid role name`},
		{role: Node, name: ".", wantErrString: `roles: node name ".": path cannot contain dot segments: invalid role name`},
		{role: Agent, name: "caf\u00e9", wantErrString: `roles: agent name "café": path segment characters are limited to letters, numbers, dots, dashes, and underscores: invalid role name`},
		{role: Agent, name: "a b", wantErrString: `roles: agent name "a b": path segment characters are limited to letters, numbers, dots, dashes, and underscores: invalid role name`},
		{role: Admin, name: "alice", want: "spiffe://example.org/tier0/admin/alice"},
		{role: Auditor, name: "bob", want: "spiffe://example.org/tier0/auditor/bob"},
		{role: Admin, name: "a/b", wantErrString: `roles: admin name "a/b": path segment characters are limited to letters, numbers, dots, dashes, and underscores: invalid role name`},
		{role: None, name: "x", wantErrString: `roles: role 0: invalid role name`},
		{role: Role(99), wantErrString: `roles: role 99: invalid role name`},
	}
	for _, tt := range tests {
		id, err := ID(td, tt.role, tt.name)
		if tt.wantErrString != "" {
			if err == nil || err.Error() != tt.wantErrString || !errors.Is(err, ErrInvalidName) || !id.IsZero() {
				t.Errorf("ID(%s, %q) = %q, %v\nwant error %s", tt.role, tt.name, id, err, tt.wantErrString)
			}
			continue
		}
		if err != nil || id.String() != tt.want {
			t.Errorf("ID(%s, %q) = %q, %v; want %s", tt.role, tt.name, id, err, tt.want)
		}
	}
	if _, err := ID(spiffeid.TrustDomain{}, Agent, "a"); err == nil || err.Error() != "roles: agent id: trust domain is empty: invalid role name" {
		t.Errorf("zero trust domain: %v", err)
	}
	if !AdminID(spiffeid.TrustDomain{}).IsZero() || !AuditorID(spiffeid.TrustDomain{}).IsZero() {
		t.Error("AdminID/AuditorID of the zero trust domain is not the zero ID")
	}
	if a, err := AgentID(td, "a1"); err != nil || a.String() != "spiffe://example.org/tier0/agent/a1" {
		t.Errorf("AgentID = %s, %v", a, err)
	}
	if n, err := NodeID(td, "n1"); err != nil || n.String() != "spiffe://example.org/tier0/node/n1" {
		t.Errorf("NodeID = %s, %v", n, err)
	}
	if AdminID(td).String() != "spiffe://example.org/tier0/admin" || AuditorID(td).String() != "spiffe://example.org/tier0/auditor" {
		t.Errorf("AdminID %s, AuditorID %s", AdminID(td), AuditorID(td))
	}
}

// TestNameLength: a role name is bounded by the ID it makes (MaxIDBytes),
// and the error never echoes the oversized name.
func TestNameLength(t *testing.T) {
	agentPrefix := len("spiffe://example.org/tier0/agent/")
	if id, err := AgentID(td, strings.Repeat("n", MaxIDBytes-agentPrefix)); err != nil || len(id.String()) != MaxIDBytes {
		t.Errorf("AgentID at the limit: %v", err)
	}
	for n, want := range map[int]string{
		MaxIDBytes - agentPrefix + 1: "roles: agent name of 2016 bytes: spiffe id of 2049 bytes exceeds the limit of 2048 bytes: invalid role name",
		MaxIDBytes + 1:               "roles: agent name of 2049 bytes: its spiffe id would exceed the limit of 2048 bytes: invalid role name",
		1 << 20:                      "roles: agent name of 1048576 bytes: its spiffe id would exceed the limit of 2048 bytes: invalid role name",
	} {
		if _, err := AgentID(td, strings.Repeat("n", n)); err == nil || err.Error() != want || !errors.Is(err, ErrInvalidName) {
			t.Errorf("AgentID(%d bytes) = %v\nwant %s", n, err, want)
		}
	}
	if _, err := NodeID(td, strings.Repeat("n", MaxIDBytes)); err == nil || err.Error() != "roles: node name of 2048 bytes: spiffe id of 2080 bytes exceeds the limit of 2048 bytes: invalid role name" {
		t.Errorf("NodeID(2048 bytes) = %v", err)
	}
	// A bad name is quoted, truncated.
	bad := strings.Repeat("/", 1000)
	if _, err := AgentID(td, bad); err == nil || !strings.Contains(err.Error(), "... (1000 bytes)") || len(err.Error()) > 400 {
		t.Errorf("AgentID(1000 bad bytes) = %v", err)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		id   string
		role Role
		name string
	}{
		{"spiffe://example.org/tier0/agent/a1", Agent, "a1"},
		{"spiffe://example.org/tier0/node/n1", Node, "n1"},
		{"spiffe://example.org/tier0/admin", Admin, ""},
		{"spiffe://example.org/tier0/auditor", Auditor, ""},
		{"spiffe://example.org/tier0/agent/admin", Agent, "admin"},
		{"spiffe://example.org/tier0/node/..a", Node, "..a"},
		// extra or missing segments
		{"spiffe://example.org/tier0/agent", None, ""},
		{"spiffe://example.org/tier0/node", None, ""},
		{"spiffe://example.org/tier0/agent/a1/x", None, ""},
		{"spiffe://example.org/tier0/node/n1/raft", None, ""},
		{"spiffe://example.org/tier0/admin/alice", Admin, "alice"},
		{"spiffe://example.org/tier0/auditor/bob", Auditor, "bob"},
		{"spiffe://example.org/tier0/admin/alice/x", None, ""},
		{"spiffe://example.org/tier0", None, ""},
		{"spiffe://example.org", None, ""},
		// prefix and suffix look-alikes
		{"spiffe://example.org/tier0/agentx/a1", None, ""},
		{"spiffe://example.org/tier0/agen/a1", None, ""},
		{"spiffe://example.org/tier0/adminx", None, ""},
		{"spiffe://example.org/tier0x/admin", None, ""},
		{"spiffe://example.org/x/tier0/agent/a1", None, ""},
		{"spiffe://example.org/x/tier0/admin", None, ""},
		{"spiffe://example.org/tier0/tier0/admin", None, ""},
		// case
		{"spiffe://example.org/TIER0/agent/a1", None, ""},
		{"spiffe://example.org/Tier0/admin", None, ""},
		{"spiffe://example.org/tier0/Admin", None, ""},
		{"spiffe://example.org/tier0/NODE/n1", None, ""},
		// other trust domains
		{"spiffe://other.org/tier0/agent/a1", None, ""},
		{"spiffe://other.org/tier0/admin", None, ""},
		{"spiffe://example.org.evil/tier0/node/n1", None, ""},
		{"spiffe://evil.example.org/tier0/admin", None, ""},
		{"spiffe://example.or/tier0/auditor", None, ""},
		// not a role at all
		{"spiffe://example.org/ns/prod/sa/web", None, ""},
	}
	for _, tt := range tests {
		id := spiffeid.RequireFromString(tt.id)
		r, name, ok := Parse(td, id)
		if r != tt.role || name != tt.name || ok != (tt.role != None) {
			t.Errorf("Parse(%s) = %s, %q, %v; want %s, %q", tt.id, r, name, ok, tt.role, tt.name)
		}
		agent, isAgent := AgentName(td, id)
		if isAgent != (tt.role == Agent) || (isAgent && agent != tt.name) {
			t.Errorf("AgentName(%s) = %q, %v", tt.id, agent, isAgent)
		}
		node, isNode := NodeName(td, id)
		if isNode != (tt.role == Node) || (isNode && node != tt.name) {
			t.Errorf("NodeName(%s) = %q, %v", tt.id, node, isNode)
		}
		// A role ID round-trips through its constructor.
		if tt.role != None {
			back, err := ID(td, tt.role, tt.name)
			if err != nil || back != id {
				t.Errorf("ID(%s, %q) = %s, %v; want %s", tt.role, tt.name, back, err, id)
			}
		}
	}
	// IDs that go-spiffe itself refuses never reach Parse: "..", empty
	// segments, a trailing slash, non-ASCII, an upper-case trust domain.
	for _, s := range []string{
		"spiffe://example.org/tier0/agent/..", "spiffe://example.org/tier0/agent/.", "spiffe://example.org/tier0//agent/a",
		"spiffe://example.org/tier0/agent/", "spiffe://example.org/tier0/agent/caf\u00e9", "spiffe://EXAMPLE.org/tier0/admin",
		"spiffe://example.org/tier0/agent/a%2Fb",
	} {
		if id, err := spiffeid.FromString(s); err == nil {
			t.Errorf("go-spiffe parsed %q as %s; Parse must be checked against it", s, id)
		}
	}
	if r, _, ok := Parse(td, spiffeid.ID{}); ok || r != None {
		t.Error("the zero ID parsed as a role")
	}
	if _, _, ok := Parse(spiffeid.TrustDomain{}, spiffeid.RequireFromString("spiffe://example.org/tier0/admin")); ok {
		t.Error("the zero trust domain matched")
	}
}

func TestAuthorizeNode(t *testing.T) {
	authz := AuthorizeNode(td)
	tests := []struct{ id, wantErr string }{
		{id: "spiffe://example.org/tier0/node/n1"},
		{id: "spiffe://example.org/tier0/node/a.b-c_d"},
		{"spiffe://example.org/tier0/nodes/x", `roles: "spiffe://example.org/tier0/nodes/x" is not a tier0 node of "example.org"`},
		{"spiffe://example.org/tier0/node", `roles: "spiffe://example.org/tier0/node" is not a tier0 node of "example.org"`},
		{"spiffe://example.org/tier0/node/a/b", `roles: "spiffe://example.org/tier0/node/a/b" is not a tier0 node of "example.org"`},
		{"spiffe://example.org/x/tier0/node/a", `roles: "spiffe://example.org/x/tier0/node/a" is not a tier0 node of "example.org"`},
		{"spiffe://example.org/TIER0/node/a", `roles: "spiffe://example.org/TIER0/node/a" is not a tier0 node of "example.org"`},
		{"spiffe://example.org/tier0/agent/a", `roles: "spiffe://example.org/tier0/agent/a" is not a tier0 node of "example.org"`},
		{"spiffe://example.org/tier0/admin", `roles: "spiffe://example.org/tier0/admin" is not a tier0 node of "example.org"`},
		{"spiffe://evil.org/tier0/node/n1", `roles: "spiffe://evil.org/tier0/node/n1" is not a tier0 node of "example.org"`},
		{"spiffe://example.org.evil.org/tier0/node/n1", `roles: "spiffe://example.org.evil.org/tier0/node/n1" is not a tier0 node of "example.org"`},
	}
	for _, tt := range tests {
		err := authz(spiffeid.RequireFromString(tt.id), nil)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.id, err)
			}
			continue
		}
		if err == nil || err.Error() != tt.wantErr || !errors.Is(err, ErrNotNode) {
			t.Errorf("%s: got %v\nwant %s", tt.id, err, tt.wantErr)
		}
	}
	if err := AuthorizeNode(spiffeid.TrustDomain{})(spiffeid.RequireFromString("spiffe://example.org/tier0/node/n1"), nil); err == nil {
		t.Error("the zero trust domain authorized a node")
	}
}

func TestIsReserved(t *testing.T) {
	for s, want := range map[string]bool{
		"spiffe://example.org/tier0":            true,
		"spiffe://example.org/tier0/admin":      true,
		"spiffe://example.org/TIER0/admin":      true,
		"spiffe://example.org/Tier0/node/n":     true,
		"spiffe://example.org/tier0/anything/x": true,
		"spiffe://example.org/tier0x/a":         false,
		"spiffe://example.org/a/tier0":          false,
		"spiffe://example.org/ns/prod":          false,
		"spiffe://example.org":                  false,
	} {
		if got := IsReserved(spiffeid.RequireFromString(s)); got != want {
			t.Errorf("IsReserved(%s) = %v", s, got)
		}
	}
	if IsReserved(spiffeid.ID{}) {
		t.Error("the zero ID is reserved")
	}
}

func TestRoleString(t *testing.T) {
	for r, want := range map[Role]string{None: "none", Agent: "agent", Node: "node", Admin: "admin", Auditor: "auditor", Role(42): "none"} {
		if r.String() != want {
			t.Errorf("%d: %q", r, r.String())
		}
	}
}

// FuzzParse: Parse never panics, accepts only what the constructor builds
// (an accepted ID round-trips through ID), and agrees with a reference
// match on the ID's string.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"spiffe://example.org/tier0/agent/a1", "spiffe://example.org/tier0/node/n1", "spiffe://example.org/tier0/admin",
		"spiffe://example.org/tier0/auditor", "spiffe://example.org/tier0/admin/x", "spiffe://example.org/TIER0/admin",
		"spiffe://other.org/tier0/node/n1", "spiffe://example.org/tier0/agent/a/b", "spiffe://example.org",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return
		}
		r, name, ok := Parse(td, id)
		want := referenceRole(id.String())
		if ok != (want != None) || r != want {
			t.Fatalf("Parse(%s) = %s, %q, %v; reference says %s", id, r, name, ok, want)
		}
		if !ok {
			return
		}
		back, err := ID(td, r, name)
		if err != nil || back != id {
			t.Fatalf("ID(%s, %q) = %s, %v; want %s", r, name, back, err, id)
		}
	})
}

// referenceRole matches the ID string against the four shapes directly.
func referenceRole(s string) Role {
	const base = "spiffe://example.org/tier0/"
	rest, ok := strings.CutPrefix(s, base)
	if !ok {
		return None
	}
	switch rest {
	case "admin":
		return Admin
	case "auditor":
		return Auditor
	}
	for _, c := range []struct {
		prefix string
		role   Role
	}{{"agent/", Agent}, {"node/", Node}, {"admin/", Admin}, {"auditor/", Auditor}} {
		if name, ok := strings.CutPrefix(rest, c.prefix); ok && name != "" && !strings.Contains(name, "/") {
			return c.role
		}
	}
	return None
}
