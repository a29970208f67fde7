package cliout

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/operator"
)

// golden compares got with want line by line and names the first
// difference.
func golden(t *testing.T, name, got, want string) {
	t.Helper()
	if got == want {
		return
	}
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			t.Fatalf("%s: line %d:\n got %q\nwant %q\nall:\n%s", name, i+1, gl, wl, got)
		}
	}
}

// render runs f on a buffer and fails on its error.
func render(t *testing.T, f func(*bytes.Buffer) error) string {
	t.Helper()
	var b bytes.Buffer
	if err := f(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestFlag(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	var out string
	Flag(fs, &out, "usage", Table, JSON, CSV)
	if out != Table {
		t.Fatalf("default %q", out)
	}
	err := fs.Parse([]string{"-o", "yaml"})
	if err == nil || !strings.Contains(err.Error(), `unknown output format "yaml" (want table, json, csv)`) {
		t.Fatalf("-o yaml: %v", err)
	}
	if err := fs.Parse([]string{"--output", "csv"}); err != nil || out != CSV {
		t.Fatalf("-o csv: %v %q", err, out)
	}
	v := fs.Lookup("output").Value.(Value)
	if got := strings.Join(v.Allowed(), ","); got != "table,json,csv" || v.Type() != "format" || v.String() != CSV {
		t.Fatalf("value: %q %q %q", got, v.Type(), v.String())
	}
}

func TestChange(t *testing.T) {
	golden(t, "text", render(t, func(b *bytes.Buffer) error { return Change(b, Text, nil, "deleted %s", "x") }), "deleted x\n")
	golden(t, "json", render(t, func(b *bytes.Buffer) error { return Change(b, JSON, map[string]any{"deleted": "x"}, "deleted %s", "x") }),
		"{\n  \"deleted\": \"x\"\n}\n")
	golden(t, "JSONOr text", render(t, func(b *bytes.Buffer) error {
		return JSONOr(b, Text, 1, func(w io.Writer) { w.Write([]byte("one\n")) })
	}), "one\n")
	if UnixRFC3339(0) != "" || UnixRFC3339(1) != "1970-01-01T00:00:01Z" {
		t.Fatal("UnixRFC3339")
	}
}

func TestParseKind(t *testing.T) {
	for s, want := range map[string]tier0v1.SubjectKind{"agent": tier0v1.SubjectKind_SUBJECT_KIND_AGENT,
		"admin": tier0v1.SubjectKind_SUBJECT_KIND_ADMIN, "auditor": tier0v1.SubjectKind_SUBJECT_KIND_AUDITOR} {
		k, all, err := ParseKind(s)
		if err != nil || all || k != want || KindName(k) != s {
			t.Errorf("%s: %v %v %v", s, k, all, err)
		}
		if k, err := ParseOneKind(s); err != nil || k != want {
			t.Errorf("one %s: %v %v", s, k, err)
		}
	}
	if _, all, err := ParseKind("all"); err != nil || !all {
		t.Errorf("all: %v %v", all, err)
	}
	if _, _, err := ParseKind("node"); err == nil || err.Error() != `--kind "node": want agent, admin, auditor or all` {
		t.Errorf("node: %v", err)
	}
	if _, err := ParseOneKind("all"); err == nil || err.Error() != "--kind: want agent, admin or auditor" {
		t.Errorf("one all: %v", err)
	}
}

var testAgents = []*tier0v1.AgentInfo{
	{Name: "h1", Kind: tier0v1.SubjectKind_SUBJECT_KIND_AGENT, SpiffeId: "spiffe://example.org/tier0/agent/h1", State: "active", Generation: 2,
		Selectors: []string{"join_token:h1", "unix:uid:0"}, AttestedAt: 1, AttestedNode: "n1", Serial: "0a", NotAfter: 3600, RenewedAt: 1800, RenewedNode: "n2"},
	{Name: "ops", Kind: tier0v1.SubjectKind_SUBJECT_KIND_ADMIN, SpiffeId: "spiffe://example.org/tier0/admin/ops", State: "banned", StateBy: "root", StateAt: 60},
}

func TestAgents(t *testing.T) {
	golden(t, "table", render(t, func(b *bytes.Buffer) error { return Agents(b, Table, testAgents) }),
		`SPIFFE ID                             STATE   ATTESTATION  SERIAL  EXPIRES               LAST RENEWAL          NODE  SELECTORS
spiffe://example.org/tier0/agent/h1   active  2            0a      1970-01-01T01:00:00Z  1970-01-01T00:30:00Z  n2    join_token:h1,unix:uid:0
spiffe://example.org/tier0/admin/ops  banned  0                                                                      
`)
	golden(t, "csv", render(t, func(b *bytes.Buffer) error { return Agents(b, CSV, testAgents) }),
		`spiffe_id,kind,state,generation,serial,expires_at,renewed_at,renewed_node,selectors
spiffe://example.org/tier0/agent/h1,agent,active,2,0a,1970-01-01T01:00:00Z,1970-01-01T00:30:00Z,n2,join_token:h1 unix:uid:0
spiffe://example.org/tier0/admin/ops,admin,banned,0,,,,,
`)
	golden(t, "json", render(t, func(b *bytes.Buffer) error { return Agents(b, JSON, testAgents[1:]) }),
		`[{"attested_at":"","attested_node":"","expires_at":"","generation":0,"kind":"admin","name":"ops","renewed_at":"","renewed_node":"","selectors":[],"serial":"","spiffe_id":"spiffe://example.org/tier0/admin/ops","state":"banned","state_at":"1970-01-01T00:01:00Z","state_by":"root"}]
`)
	golden(t, "empty json", render(t, func(b *bytes.Buffer) error { return Agents(b, JSON, nil) }), "[]\n")
	golden(t, "detail", render(t, func(b *bytes.Buffer) error { return Agent(b, Table, testAgents[0]) }),
		`spiffe id     spiffe://example.org/tier0/agent/h1
kind          agent
state         active
attestation   2
attested at   1970-01-01T00:00:01Z
attested on   n1
selectors     join_token:h1,unix:uid:0
svid serial   0a
svid expires  1970-01-01T01:00:00Z
last renewal  1970-01-01T00:30:00Z
renewed on    n2
state set by  
state set at  
`)
	golden(t, "state", render(t, func(b *bytes.Buffer) error { return AgentState(b, Text, testAgents[1]) }),
		"spiffe://example.org/tier0/admin/ops is banned (attestation 0)\n")
	if got := render(t, func(b *bytes.Buffer) error { return AgentState(b, JSON, testAgents[1]) }); !strings.HasPrefix(got, `{"attested_at":""`) || strings.Count(got, "\n") != 1 {
		t.Errorf("state json: %q", got)
	}
}

func TestTokens(t *testing.T) {
	ts := []*tier0v1.TokenInfo{{HashPrefix: "0123abcd", Subject: "agent h1", ExpiresAt: 3600, Used: true, Creator: "root", CreatedAt: 60},
		{HashPrefix: "ffff0000", Subject: "node n2", ExpiresAt: 7200, Creator: "root"}}
	golden(t, "table", render(t, func(b *bytes.Buffer) error { return Tokens(b, Table, ts) }),
		`HASH PREFIX  SUBJECT   EXPIRES               USED    CREATOR
0123abcd     agent h1  1970-01-01T01:00:00Z  used    root
ffff0000     node n2   1970-01-01T02:00:00Z  unused  root
`)
	golden(t, "csv", render(t, func(b *bytes.Buffer) error { return Tokens(b, CSV, ts[:1]) }),
		"hash_prefix,subject,expires_at,used,creator,created_at\n0123abcd,agent h1,1970-01-01T01:00:00Z,true,root,1970-01-01T00:01:00Z\n")
	golden(t, "json", render(t, func(b *bytes.Buffer) error { return Tokens(b, JSON, ts[1:]) }),
		`[{"created_at":"","creator":"root","expires_at":"1970-01-01T02:00:00Z","hash_prefix":"ffff0000","subject":"node n2","used":false}]`+"\n")
}

func TestTokenCreated(t *testing.T) {
	exp := time.Unix(3600, 0)
	for _, tc := range []struct {
		r              operator.TokenRequest
		format, stdout string
		stderr         string
	}{
		{operator.TokenRequest{Agent: "h1"}, Text, "T\n", "created a join token for agent h1, valid until 1970-01-01T01:00:00Z, works once\n"},
		{operator.TokenRequest{Node: "n2"}, Text, "T\n", "created a join token for cluster node n2, valid until 1970-01-01T01:00:00Z, works once\n"},
		{operator.TokenRequest{Admin: "ops"}, Text, "T\n",
			"created a join token for admin ops, valid until 1970-01-01T01:00:00Z, works once: tier0 login --token T --server ADDR --data-dir DIR\n"},
		{operator.TokenRequest{Auditor: "aud"}, JSON, "{\n  \"auditor\": \"aud\",\n  \"expires_at\": \"1970-01-01T01:00:00Z\",\n  \"token\": \"T\"\n}\n", ""},
		{operator.TokenRequest{Agent: "h1"}, JSON, "{\n  \"agent\": \"h1\",\n  \"expires_at\": \"1970-01-01T01:00:00Z\",\n  \"node\": \"\",\n  \"token\": \"T\"\n}\n", ""},
	} {
		var out, errw bytes.Buffer
		if err := TokenCreated(&out, &errw, tc.format, operator.Token{Token: "T", ExpiresAt: exp, Request: tc.r}); err != nil {
			t.Fatal(err)
		}
		golden(t, "stdout", out.String(), tc.stdout)
		golden(t, "stderr", errw.String(), tc.stderr)
	}
}

func TestEntries(t *testing.T) {
	es := []*tier0v1.Entry{
		{Id: "e1", Agent: "h1", SpiffeId: "spiffe://example.org/web", TtlSeconds: 1800, Selectors: []string{"unix:uid:0", "unix:gid:0"}, FederatesWith: []string{"other.org"}},
		{Id: "e2", SpiffeId: "spiffe://example.org/db", TtlSeconds: 900, NodeSelectors: []string{"k8s_psat:cluster:prod", "x:y"}},
	}
	golden(t, "table", render(t, func(b *bytes.Buffer) error { return Entries(b, Table, es) }),
		`ID  AGENT                           SPIFFE ID                 TTL    SELECTORS              FEDERATES WITH
e1  h1                              spiffe://example.org/web  30m0s  unix:uid:0,unix:gid:0  other.org
e2  node:k8s_psat:cluster:prod+x:y  spiffe://example.org/db   15m0s                         
`)
	golden(t, "csv", render(t, func(b *bytes.Buffer) error { return Entries(b, CSV, es) }),
		`id,agent,spiffe_id,ttl,selectors,federates_with,node_selectors
e1,h1,spiffe://example.org/web,30m0s,unix:uid:0 unix:gid:0,other.org,
e2,,spiffe://example.org/db,15m0s,,,k8s_psat:cluster:prod x:y
`)
	golden(t, "json", render(t, func(b *bytes.Buffer) error { return Entries(b, JSON, es[1:]) }),
		`[{"agent":"","federates_with":[],"id":"e2","node_selectors":["k8s_psat:cluster:prod","x:y"],"selectors":[],"spiffe_id":"spiffe://example.org/db","ttl":"15m0s"}]`+"\n")
	golden(t, "created", render(t, func(b *bytes.Buffer) error { return EntryCreated(b, Text, es[0]) }),
		"created entry e1: agent h1 may get spiffe://example.org/web for 30m0s, selectors unix:uid:0,unix:gid:0, federates with other.org\n")
	golden(t, "created node", render(t, func(b *bytes.Buffer) error { return EntryCreated(b, Text, es[1]) }),
		"created entry e2: every agent node-attested with those selectors may get spiffe://example.org/db for 15m0s, node selectors k8s_psat:cluster:prod,x:y\n")
}
