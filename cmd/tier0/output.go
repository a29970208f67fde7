package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// Output formats of -o/--output. Every command takes its -o through
// outputFlag, so an unknown format is refused when the flags are parsed,
// before the command does anything.
const (
	outTable = "table"
	outText  = "text"
	outJSON  = "json"
	outCSV   = "csv"
)

// outputValue is the -o flag: a format out of a fixed list.
type outputValue struct {
	p       *string
	allowed []string
}

func (o outputValue) String() string {
	if o.p == nil {
		return ""
	}
	return *o.p
}

func (o outputValue) Set(s string) error {
	if !slices.Contains(o.allowed, s) {
		return fmt.Errorf("unknown output format %q (want %s)", s, strings.Join(o.allowed, ", "))
	}
	*o.p = s
	return nil
}

func (o outputValue) Type() string { return "format" }

// outputFlag adds -o/--output to fs, stored in *p: def unless given, one
// of allowed (def first) or refused. usage describes the formats.
func outputFlag(fs *pflag.FlagSet, p *string, usage, def string, allowed ...string) {
	*p = def
	fs.VarP(outputValue{p: p, allowed: append([]string{def}, allowed...)}, "output", "o", usage)
}

// printJSON writes v as one indented JSON document.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printJSONOr writes v as JSON when output is json, else calls text.
func printJSONOr(w io.Writer, output string, v any, text func(io.Writer)) error {
	if output == outJSON {
		return printJSON(w, v)
	}
	text(w)
	return nil
}

// printChange is how a command that changes state says what it changed:
// one line on stdout (format, args), or with -o json the object v.
func printChange(w io.Writer, output string, v any, format string, args ...any) error {
	if output == outJSON {
		return printJSON(w, v)
	}
	_, err := fmt.Fprintf(w, format+"\n", args...)
	return err
}
