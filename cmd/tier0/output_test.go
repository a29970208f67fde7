package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
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
			if _, ok := f.Value.(outputValue); !ok || f.Shorthand != "o" {
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
// empty one when there are no entries); `entry create -o json` one object.
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
	out = must(srv.cli("entry", "list", "-o", "json"))
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 {
		t.Fatalf("list -o json: %q (%v), want an array of 2", out, err)
	}
}
