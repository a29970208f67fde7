// Package flagconfig fills the flags of a command that were not given on
// the command line from environment variables and from an optional YAML
// config file, in that order of precedence:
//
//	command-line flag > environment variable > config file > flag default
//
// It works on any *pflag.FlagSet and sets every value through the flag's
// own Set, so types, parsing and validation are the flag's: a config file
// cannot express anything the command line cannot. The environment
// variable of a flag is its name upper-cased with '-' as '_' behind a
// prefix (--data-dir with prefix TIER0_ is TIER0_DATA_DIR); a config file
// key is the flag name (data-dir: /var/lib/tier0), a list value (YAML
// sequence) sets a repeatable flag once per element.
//
// Errors name their source (the flag, the variable, or FILE:LINE key) so
// an operator finds the bad line; a key that is no flag is an error, a
// variable that is no flag is ignored (other tools share the prefix).
// Values of secret flags (see Options.SecretWords) never appear in errors
// or in the summary Sources gives for logs.
package flagconfig

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// Options says where values come from.
type Options struct {
	// EnvPrefix is put before a flag's variable name, e.g. "TIER0_".
	EnvPrefix string
	// FileFlag names the flag holding the config file path (e.g.
	// "config"); "" means no config file. It is read from the command
	// line or its own environment variable, never from the file.
	FileFlag string
	// EnvAliases maps deprecated variable names to flag names
	// ("TIER0_DATA" -> "data-dir"). An alias is used only when the
	// flag's own variable is unset; its Source is marked Deprecated.
	EnvAliases map[string]string
	// Skip lists flags that come only from the command line ("help").
	Skip []string
	// SecretWords: a flag whose name contains one of them has its value
	// kept out of errors and Sources. Default DefaultSecretWords.
	SecretWords []string
	// LookupEnv reads the environment. Default os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

// DefaultSecretWords are the name parts of flags whose values may hold or
// lead to secrets (PINs, tokens, DSNs with passwords, key locations).
var DefaultSecretWords = []string{"key", "pin", "token", "password", "dsn", "store", "secret"}

// Origin is where a flag's value came from.
type Origin int

// Origins, strongest first.
const (
	FromFlag Origin = iota + 1
	FromEnv
	FromFile
)

// Source records where one flag got its value. Flags left at their
// default have none.
type Source struct {
	Flag   string
	Origin Origin
	// Where is "--listen", "TIER0_LISTEN" or "/etc/tier0/tier0.yaml:3 listen".
	Where string
	// Deprecated is set when the value came from an EnvAliases variable.
	Deprecated bool
	// Secret is set when the flag's value must not be shown.
	Secret bool
}

// String is "127.0.0.1:8443 (TIER0_LISTEN)" for a flag whose value is
// value, or "<redacted> (/etc/tier0/tier0.yaml:4 store)" for a secret flag.
func (s Source) String(value string) string {
	if s.Secret {
		value = "<redacted>"
	}
	where := s.Where
	if s.Deprecated {
		where += ", deprecated"
	}
	return fmt.Sprintf("%s (%s)", value, where)
}

// EnvName is the environment variable of flag name behind prefix.
func EnvName(prefix, name string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Apply fills the flags of fs not set on the command line from the
// environment and then from the config file, and returns where every set
// flag got its value, in flag-name order. On error no promise is made about
// which flags were set; the caller stops.
func Apply(fs *pflag.FlagSet, o Options) ([]Source, error) {
	o.defaults()
	file, err := o.loadFile(fs)
	if err != nil {
		return nil, err
	}
	aliases := o.aliasesByFlag()
	var out []Source
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if slices.Contains(o.Skip, f.Name) {
			return
		}
		src := Source{Flag: f.Name, Secret: o.secret(f.Name)}
		if file != nil {
			file.known[f.Name] = true // the key is valid even if a stronger source wins
		}
		switch {
		case f.Changed:
			src.Origin, src.Where = FromFlag, "--"+f.Name
		case o.fromEnv(fs, f, aliases[f.Name], &src, &errs):
		case file != nil && file.set(fs, f, &src, &errs):
		default:
			return
		}
		out = append(out, src)
	})
	if file != nil {
		errs = append(errs, file.unknown(fs)...)
		out = append(out, file.source)
		slices.SortFunc(out, func(a, b Source) int { return strings.Compare(a.Flag, b.Flag) })
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func (o *Options) defaults() {
	if o.SecretWords == nil {
		o.SecretWords = DefaultSecretWords
	}
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	if o.FileFlag != "" && !slices.Contains(o.Skip, o.FileFlag) {
		o.Skip = append(slices.Clone(o.Skip), o.FileFlag)
	}
}

func (o *Options) secret(name string) bool {
	return slices.ContainsFunc(o.SecretWords, func(w string) bool { return strings.Contains(name, w) })
}

// aliasesByFlag inverts EnvAliases, sorted so the choice is stable.
func (o *Options) aliasesByFlag() map[string][]string {
	m := map[string][]string{}
	for env, name := range o.EnvAliases {
		m[name] = append(m[name], env)
	}
	for _, v := range m {
		slices.Sort(v)
	}
	return m
}

// lookup treats an empty variable as unset: `TIER0_X=` restores the
// default, as unsetting it would.
func (o *Options) lookup(name string) (string, bool) {
	v, ok := o.LookupEnv(name)
	return v, ok && v != ""
}

// fromEnv sets f from its variable (or a deprecated alias) and reports
// whether one was set.
func (o *Options) fromEnv(fs *pflag.FlagSet, f *pflag.Flag, aliases []string, src *Source, errs *[]error) bool {
	names := append([]string{EnvName(o.EnvPrefix, f.Name)}, aliases...)
	for i, name := range names {
		v, ok := o.lookup(name)
		if !ok {
			continue
		}
		src.Origin, src.Where, src.Deprecated = FromEnv, name, i > 0
		if err := set(fs, f, v, src.Secret); err != nil {
			*errs = append(*errs, fmt.Errorf("flagconfig: environment %s: %w", name, err))
		}
		return true
	}
	return false
}

// set passes v to the flag's own Set; for a secret flag the value is cut
// out of the error.
func set(fs *pflag.FlagSet, f *pflag.Flag, v string, secret bool) error {
	err := fs.Set(f.Name, v)
	if err == nil || !secret {
		return err
	}
	msg := err.Error()
	if v != "" {
		msg = strings.ReplaceAll(msg, v, "<redacted>")
	}
	return errors.New(msg)
}

// LogAttrs renders srcs for one log line: an attribute per flag, its key
// the flag name and its value "VALUE (WHERE)" with the flag's current
// value, "<redacted>" for a secret flag.
func LogAttrs(fs *pflag.FlagSet, srcs []Source) []any {
	out := make([]any, 0, len(srcs))
	for _, s := range srcs {
		v := ""
		if f := fs.Lookup(s.Flag); f != nil {
			v = f.Value.String()
		}
		out = append(out, slog.String(s.Flag, s.String(v)))
	}
	return out
}

// StripEnv returns environ (os.Environ form) without the variables whose
// names start with prefix: for a child process that must run on its own
// flags only (a scratch or benchmark server started by a tool), not on
// the configuration of the server the operator's environment describes.
func StripEnv(environ []string, prefix string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}
