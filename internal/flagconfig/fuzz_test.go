package flagconfig

import (
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
		"listen: !!binary aGk=\n", "? [a]\n: b\n",
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
