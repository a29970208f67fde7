package flagconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// FuzzParseFile: any bytes give a parsed file or an error naming the file,
// never a panic; a parsed file applies to a flag set without panicking.
func FuzzParseFile(f *testing.F) {
	for _, seed := range []string{
		"", "# c\n", "listen: 127.0.0.1:1\n", "join: [a, b]\n", "tag:\n  - x\n  - y\n",
		"max-queue: 1\nmax-queue: 2\n", "a: {b: c}\n", "--- \n...\n", "- 1\n", "&a x: *a\n",
		"listen: !!binary aGk=\n", "? [a]\n: b\n", "store: {file: /x}\n", "max-queue: {file: y}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := parseFile("fuzz.yaml", raw)
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		// {file: PATH} values read a fixed file, not whatever the input names
		// (a device or /proc file could block).
		valueFile := filepath.Join(t.TempDir(), "value")
		if err := os.WriteFile(valueFile, []byte("1\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for k, e := range c.keys {
			if e.file != "" {
				e.file = valueFile
				c.keys[k] = e
			}
		}
		fs, _ := newFlags(t)
		o := opts()
		o.defaults()
		fs.VisitAll(func(fl *pflag.Flag) {
			c.known[fl.Name] = true
			var errs []error
			c.set(fs, fl, &Source{}, &errs)
		})
		_ = c.unknown(fs)
	})
}
