package witness

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLoadOrCreateKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state", "witness.key")
	k1, pub1, err := LoadOrCreateKey(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v, want mode 0600", fi, err)
	}
	k2, pub2, err := LoadOrCreateKey(p)
	if err != nil || !k1.Equal(k2) || !pub1.Equal(pub2) {
		t.Fatalf("reload gave another key (%v)", err)
	}
	if err := os.WriteFile(p, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKey(p); err == nil {
		t.Fatal("a file without a PEM key was accepted")
	}
}
