// Package cliout renders what the tier0 CLI prints: the -o/--output flag
// (a format out of a fixed list, refused at parse time), JSON and one-line
// change reports, and the tables, JSON and CSV of agents, tokens, entries,
// federation relationships, CA roots, cluster status, trust bundles,
// backups and restores. It only formats: cmd/tier0 calls the server and
// hands the answers here.
package cliout

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
)

// Output formats of -o/--output.
const (
	Table = "table"
	Text  = "text"
	JSON  = "json"
	CSV   = "csv"
)

// Value is the -o flag: a format out of a fixed list.
type Value struct {
	p       *string
	allowed []string
}

func (o Value) String() string {
	if o.p == nil {
		return ""
	}
	return *o.p
}

// Set refuses a format that is not allowed, naming the allowed ones.
func (o Value) Set(s string) error {
	if !slices.Contains(o.allowed, s) {
		return fmt.Errorf("unknown output format %q (want %s)", s, strings.Join(o.allowed, ", "))
	}
	*o.p = s
	return nil
}

// Type is the flag's type in help.
func (o Value) Type() string { return "format" }

// Allowed are the formats the flag takes, the default first.
func (o Value) Allowed() []string { return slices.Clone(o.allowed) }

// Flag adds -o/--output to fs, stored in *p: def unless given, one of
// allowed (def first) or refused. usage describes the formats.
func Flag(fs *pflag.FlagSet, p *string, usage, def string, allowed ...string) {
	*p = def
	fs.VarP(Value{p: p, allowed: append([]string{def}, allowed...)}, "output", "o", usage)
}

// PrintJSON writes v as one indented JSON document.
func PrintJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// JSONOr writes v as JSON when format is json, else calls text.
func JSONOr(w io.Writer, format string, v any, text func(io.Writer)) error {
	if format == JSON {
		return PrintJSON(w, v)
	}
	text(w)
	return nil
}

// Change is how a command that changes state says what it changed: one
// line (fmtLine, args), or with -o json the object v.
func Change(w io.Writer, format string, v any, fmtLine string, args ...any) error {
	if format == JSON {
		return PrintJSON(w, v)
	}
	_, err := fmt.Fprintf(w, fmtLine+"\n", args...)
	return err
}

// UnixRFC3339 is Unix time s in UTC, RFC 3339 ("" for 0).
func UnixRFC3339(s int64) string {
	if s == 0 {
		return ""
	}
	return time.Unix(s, 0).UTC().Format(time.RFC3339)
}

// tabs is the tabwriter of every table.
func tabs(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// nonNil is s, or an empty slice (JSON [] rather than null).
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
