package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestBackupSaysSoftKeysAreMissing: a backup of a soft-key CA without
// --include-dev-key says that its key is not in it (not "HSM/KMS keys stay
// in the HSM/KMS"), on create and on verify.
func TestBackupSaysSoftKeysAreMissing(t *testing.T) {
	srv := startServer(t, t.TempDir())
	bak := filepath.Join(t.TempDir(), "b.tier0")
	for _, args := range [][]string{{"backup", "create", "--out", bak}, {"backup", "verify", bak}} {
		out := must(srv.cli(args...))
		if !strings.Contains(out, "keys           NOT included: the DEV-ONLY soft key of root ") || strings.Contains(out, "HSM/KMS keys stay") {
			t.Errorf("%v:\n%s", args, out)
		}
	}
}
