package main

import (
	"fmt"
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
