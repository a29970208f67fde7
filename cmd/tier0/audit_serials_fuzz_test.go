package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzReadSerials: any file gives serials (lower-case hex, at most 64
// digits, no duplicates) or an error, never a panic.
func FuzzReadSerials(f *testing.F) {
	for _, s := range []string{"", "ab\n", "# c\nAB\nab\n", "0x12\n", "abc def\n", strings.Repeat("f", 65), "\r\n12\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		p := filepath.Join(t.TempDir(), "serials")
		if err := os.WriteFile(p, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readSerials(p)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, s := range got {
			if s == "" || len(s) > 64 || strings.Trim(s, "0123456789abcdef") != "" || seen[s] {
				t.Fatalf("bad serial %q in %q", s, got)
			}
			seen[s] = true
		}
	})
}
