package main

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/tier0-ca/tier0/internal/cliout"
)

// TestOutputFlagEverywhere: every -o/--output of every tier0 command is the
// shared format flag, so an unknown format is refused at parse time.
func TestOutputFlagEverywhere(t *testing.T) {
	n := 0
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		check := func(f *pflag.Flag) {
			if f.Name != "output" {
				return
			}
			n++
			if _, ok := f.Value.(cliout.Value); !ok || f.Shorthand != "o" {
				t.Errorf("%s: --output is a %T (-%s), not the shared format flag", c.CommandPath(), f.Value, f.Shorthand)
			}
		}
		c.LocalFlags().VisitAll(check)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd(&globalFlags{}))
	if n < 10 {
		t.Errorf("found %d --output flags, want every command's (at least 10)", n)
	}
}

// TestUnknownOutputRefused: before any work, with a message listing the
// formats.
func TestUnknownOutputRefused(t *testing.T) {
	for _, args := range [][]string{
		{"entry", "list", "-o", "yaml"},
		{"audit", "list", "-o", "xml"},
		{"cluster", "status", "--output=JSON"},
		{"backup", "verify", "-o", "table", "x.tier0"},
	} {
		err := run(t.Context(), append(args, "--data-dir", t.TempDir()))
		if err == nil || !strings.Contains(err.Error(), "unknown output format") || !strings.Contains(err.Error(), "(want ") {
			t.Errorf("%v: %v", args, err)
		}
	}
}

// TestEntryListJSONArray: `entry list -o json` prints one JSON array (an
// empty one when there are no entries), -o csv a header and a row each;
// `entry create -o json` one object; create and delete say what they
// changed; --agent takes the name or the agent's SPIFFE ID.
func TestEntryListJSONArray(t *testing.T) {
	srv := startServer(t, t.TempDir())
	out := must(srv.cli("entry", "list", "-o", "json"))
	if strings.TrimSpace(out) != "[]" {
		t.Errorf("no entries: %q, want []", out)
	}
	for _, id := range []string{"a", "b"} {
		out := must(srv.cli("entry", "create", "--agent", "h1", "--spiffe-id", "spiffe://example.org/"+id, "-o", "json"))
		var e map[string]any
		if err := json.Unmarshal([]byte(out), &e); err != nil || e["spiffe_id"] != "spiffe://example.org/"+id {
			t.Fatalf("create -o json: %q %v", out, err)
		}
	}
	out = must(srv.cli("entry", "create", "--agent", "spiffe://example.org/tier0/agent/h2", "--spiffe-id", "spiffe://example.org/c"))
	if !strings.HasPrefix(out, "created entry ") || !strings.Contains(out, ": agent h2 may get spiffe://example.org/c for 30m0s") || strings.Count(out, "\n") != 1 {
		t.Errorf("create: %q, want one line naming the entry", out)
	}
	id := strings.TrimSuffix(strings.Fields(out)[2], ":")
	out = must(srv.cli("entry", "list", "-o", "json"))
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 3 {
		t.Fatalf("list -o json: %q (%v), want an array of 3", out, err)
	}
	out = must(srv.cli("entry", "list", "--agent", "spiffe://example.org/tier0/agent/h1", "-o", "csv"))
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || lines[0] != "id,agent,spiffe_id,ttl,selectors,federates_with,node_selectors" || !strings.Contains(lines[1], ",h1,") {
		t.Errorf("list --agent ID -o csv: %q, want a header and h1's 2 entries", out)
	}
	if _, err := srv.cli("entry", "list", "--agent", "spiffe://other.org/tier0/agent/h1"); err == nil || !strings.Contains(err.Error(), "trust domain other.org is not the server's (example.org)") {
		t.Errorf("--agent in another trust domain: %v", err)
	}
	if out := must(srv.cli("entry", "delete", id)); out != "deleted entry "+id+"\n" {
		t.Errorf("delete: %q", out)
	}
	out = must(srv.cli("token", "create", "--agent", "spiffe://example.org/tier0/agent/h3", "-o", "json"))
	var tok map[string]any
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok["agent"] != "h3" || tok["token"] == "" || tok["expires_at"] == "" {
		t.Errorf("token create -o json: %q %v", out, err)
	}
}

// TestEveryPrintingCommandHasOutput: every runnable command but `server`
// (it prints logs, not data) takes -o, so scripts can always ask for JSON.
func TestEveryPrintingCommandHasOutput(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		path := c.CommandPath()
		if !c.Runnable() || path == "tier0 server" || path == "tier0 help" || strings.HasPrefix(path, "tier0 completion") {
			return
		}
		f := c.Flags().Lookup("output")
		if f == nil {
			t.Errorf("%s: no -o/--output", path)
			return
		}
		if v, ok := f.Value.(cliout.Value); !ok || !slices.Contains(v.Allowed(), outJSON) {
			t.Errorf("%s: -o does not offer json", path)
		}
	}
	walk(newRootCmd(&globalFlags{}))
}

// TestUnknownOutputRefusedEverywhere: every command's -o refuses an
// unknown format before doing anything (no server runs here).
func TestUnknownOutputRefusedEverywhere(t *testing.T) {
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		for _, sub := range c.Commands() {
			walk(sub, append(slices.Clone(path), sub.Name()))
		}
		if c.Flags().Lookup("output") != nil {
			paths = append(paths, path)
		}
	}
	walk(newRootCmd(&globalFlags{}), nil)
	for _, p := range paths {
		err := run(t.Context(), append(p, "-o", "yaml", "--data-dir", t.TempDir()))
		if err == nil || !strings.Contains(err.Error(), `unknown output format "yaml" (want `) {
			t.Errorf("tier0 %s -o yaml: %v", strings.Join(p, " "), err)
		}
	}
	if len(paths) < 25 {
		t.Errorf("checked %d commands, want every printing command (25 or more)", len(paths))
	}
}

// TestDeprecatedRestoreAlias: `tier0 restore` still runs `backup restore`
// (same flags) and says on stderr to use the new spelling; it is hidden.
func TestDeprecatedRestoreAlias(t *testing.T) {
	root := newRootCmd(&globalFlags{})
	var stdout, stderr strings.Builder
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	missing := filepath.Join(t.TempDir(), "none.tier0")
	root.SetArgs([]string{"restore", "--from", missing, "--data-dir", t.TempDir()})
	err := root.ExecuteContext(t.Context())
	if err == nil || !strings.Contains(err.Error(), "none.tier0") {
		t.Errorf("restore of a missing file: %v", err)
	}
	if !strings.Contains(stderr.String()+stdout.String(), "use `tier0 backup restore`") {
		t.Errorf("no deprecation note: stdout %q stderr %q", stdout.String(), stderr.String())
	}
	for _, c := range root.Commands() {
		if c.Name() == "restore" && c.IsAvailableCommand() {
			t.Error("tier0 restore is listed in help")
		}
	}
	if c, _, err := root.Find([]string{"backup", "restore"}); err != nil || c.Name() != "restore" {
		t.Errorf("tier0 backup restore: %v", err)
	}
}
