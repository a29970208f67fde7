package flagconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// maxFileSize bounds what is read: a config file is a few hundred bytes.
const maxFileSize = 1 << 20

// file is a parsed config file: one YAML mapping of flag names to scalars,
// lists of scalars or {file: PATH} (the value is PATH's contents).
type file struct {
	path   string
	source Source // where the path came from
	keys   map[string]entry
	known  map[string]bool // keys that name a flag taken from the file
}

type entry struct {
	line   int
	values []string // one for a scalar, one per element for a list
	list   bool
	file   string // {file: PATH}: the value is read from PATH when applied
	// section is a YAML mapping (not {file: PATH}) as YAML text: the value
	// of a flag marked with SectionAnnotation.
	section string
}

// SectionAnnotation marks a flag whose value is a YAML mapping: in the
// config file its key may hold a mapping (a section), which the flag
// receives as YAML text. Other flags refuse a mapping.
const SectionAnnotation = "flagconfig_section"

// loadFile reads the file named by the FileFlag flag or, if it was not
// given, by its environment variable; nil when there is none.
func (o *Options) loadFile(fs *pflag.FlagSet) (*file, error) {
	if o.FileFlag == "" {
		return nil, nil
	}
	f := fs.Lookup(o.FileFlag)
	if f == nil {
		return nil, fmt.Errorf("flagconfig: no --%s flag", o.FileFlag)
	}
	path, src := f.Value.String(), Source{Flag: o.FileFlag, Origin: FromFlag, Where: "--" + o.FileFlag}
	if !f.Changed {
		env := EnvName(o.EnvPrefix, o.FileFlag)
		v, ok := o.lookup(env)
		if !ok {
			return nil, nil
		}
		if err := fs.Set(o.FileFlag, v); err != nil {
			return nil, fmt.Errorf("flagconfig: environment %s: %w", env, err)
		}
		path, src.Origin, src.Where = v, FromEnv, env
	}
	if path == "" {
		return nil, nil
	}
	raw, err := readLimited(path)
	if err != nil {
		return nil, fmt.Errorf("flagconfig: config file: %w", err)
	}
	c, err := parseFile(path, raw)
	if err != nil {
		return nil, err
	}
	for k, e := range c.keys { // a mapping is only for section flags
		if fl := fs.Lookup(k); e.section != "" && (fl == nil || fl.Annotations[SectionAnnotation] == nil) {
			return nil, fmt.Errorf("flagconfig: %s:%d: key %q: want a value, a list of values or {file: PATH}", path, e.line, k)
		}
	}
	c.source = src
	return c, nil
}

func readLimited(path string) ([]byte, error) {
	fh, err := os.Open(path) //nolint:gosec // G304: the operator names the file
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	raw, err := io.ReadAll(io.LimitReader(fh, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFileSize)
	}
	return raw, nil
}

// parseFile parses raw (the contents of path). An empty file, or one with
// only comments, has no keys.
func parseFile(path string, raw []byte) (*file, error) {
	fail := func(line int, format string, a ...any) error {
		return fmt.Errorf("flagconfig: %s:%d: %s", path, line, fmt.Sprintf(format, a...))
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return newFile(path), nil
		}
		return nil, fmt.Errorf("flagconfig: %s: %w", path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fail(extra.Line, "one YAML document expected, found more")
	}
	f := newFile(path)
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return f, nil // only comments
	}
	if root.Kind != yaml.MappingNode {
		return nil, fail(root.Line, "want a mapping of flag names to values (listen: 127.0.0.1:8443)")
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, fail(k.Line, "a key must be a flag name")
		}
		if prev, dup := f.keys[k.Value]; dup {
			return nil, fail(k.Line, "key %q repeated (first on line %d)", k.Value, prev.line)
		}
		e, err := parseValue(v)
		if err != nil {
			return nil, fail(v.Line, "key %q: %v", k.Value, err)
		}
		e.line = k.Line
		f.keys[k.Value] = e
	}
	return f, nil
}

func newFile(path string) *file {
	return &file{path: path, keys: map[string]entry{}, known: map[string]bool{}}
}

func parseValue(v *yaml.Node) (entry, error) {
	switch v.Kind {
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			return entry{}, errors.New("no value (remove the key to keep the default)")
		}
		return entry{values: []string{v.Value}}, nil
	case yaml.MappingNode:
		if len(v.Content) != 2 || v.Content[0].Value != "file" || v.Content[1].Kind != yaml.ScalarNode ||
			v.Content[1].Tag == "!!null" || v.Content[1].Value == "" {
			// A section: allowed only for a flag marked with
			// SectionAnnotation (checked in set), which gets the
			// mapping as YAML text.
			b, err := yaml.Marshal(v)
			if err != nil {
				return entry{}, err
			}
			return entry{section: string(b)}, nil
		}
		return entry{file: v.Content[1].Value}, nil
	case yaml.SequenceNode:
		e := entry{list: true}
		for _, el := range v.Content {
			if el.Kind != yaml.ScalarNode || el.Tag == "!!null" {
				return entry{}, errors.New("a list element must be a plain value")
			}
			e.values = append(e.values, el.Value)
		}
		return e, nil
	default:
		return entry{}, errors.New("want a value, a list of values or {file: PATH}")
	}
}

// set sets flag f from its key, if the file has one, and reports whether
// it did.
func (c *file) set(fs *pflag.FlagSet, f *pflag.Flag, src *Source, errs *[]error) bool {
	e, ok := c.keys[f.Name]
	if !ok {
		return false
	}
	src.Origin, src.Where = FromFile, fmt.Sprintf("%s:%d %s", c.path, e.line, f.Name)
	fail := func(err error) bool {
		*errs = append(*errs, fmt.Errorf("flagconfig: %s: %w", src.Where, err))
		return true
	}
	if e.section != "" { // loadFile checked the flag takes one
		e.values = []string{e.section}
	}
	if e.file != "" {
		v, err := readValueFile(e.file)
		if err != nil {
			return fail(err)
		}
		src.Where += " from " + e.file
		e.values = []string{v}
	}
	_, repeatable := f.Value.(pflag.SliceValue)
	switch {
	case e.list && !repeatable:
		return fail(fmt.Errorf("--%s takes one value, not a list", f.Name))
	case e.list && len(e.values) == 0:
		if err := f.Value.(pflag.SliceValue).Replace(nil); err != nil {
			return fail(err)
		}
		return true
	}
	for _, v := range e.values {
		if err := set(fs, f, v, src.Secret); err != nil {
			return fail(err)
		}
	}
	return true
}

// readValueFile reads a value kept in a file of its own ({file: PATH}: a
// join token or PIN mounted from a Kubernetes Secret): a regular file, its
// contents without trailing line breaks. Errors name the file, never its
// contents.
func readValueFile(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("value file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("value file %s: not a regular file", path)
	}
	raw, err := readLimited(path)
	if err != nil {
		return "", fmt.Errorf("value file: %w", err)
	}
	v := strings.TrimRight(string(raw), "\r\n")
	if v == "" {
		return "", fmt.Errorf("value file %s is empty", path)
	}
	return v, nil
}

// unknown reports the keys that name no flag taken from the file, each
// with the file and line.
func (c *file) unknown(fs *pflag.FlagSet) []error {
	var names []string
	for k := range c.keys {
		if !c.known[k] {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	errs := make([]error, 0, len(names))
	for _, k := range names {
		why := "not a flag of this command"
		if fs.Lookup(k) != nil {
			why = "allowed on the command line only"
		}
		errs = append(errs, fmt.Errorf("flagconfig: %s:%d: unknown key %q (%s)", c.path, c.keys[k].line, k, why))
	}
	return errs
}
