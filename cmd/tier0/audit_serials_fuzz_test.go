package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tier0-ca/tier0/internal/operator"
	"github.com/tier0-ca/tier0/storage/serial"
)

// FuzzReadSerials: any file gives serials (each a valid spelling, no two
// spellings of the same serial) or an error, never a panic.
func FuzzReadSerials(f *testing.F) {
	for _, s := range []string{"", "ab\n", "# c\nAB\nab\n", "0x12\n", "04:a7\n4A7\ndec:1191\n", "abc def\n", strings.Repeat("f", 65), "\r\n12\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		p := filepath.Join(t.TempDir(), "serials")
		if err := os.WriteFile(p, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := operator.ReadSerials(p)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, s := range got {
			c, err := serial.Canonical(s)
			if err != nil || seen[c] {
				t.Fatalf("bad serial %q in %q: %v", s, got, err)
			}
			seen[c] = true
		}
	})
}
