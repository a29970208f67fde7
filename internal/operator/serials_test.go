package operator

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadSerials(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "s.txt")
	if err := os.WriteFile(p, []byte("# received\n04a7\n\n04:A7\nff\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSerials(p)
	if err != nil || strings.Join(got, ",") != "04a7,ff" {
		t.Fatalf("ReadSerials = %v, %v; want two spellings of 04A7 once, then ff", got, err)
	}
	bad := filepath.Join(dir, "bad.txt")
	if err := os.WriteFile(bad, []byte("04a7\nnot-hex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSerials(bad); err == nil || !strings.Contains(err.Error(), "bad.txt:2") {
		t.Fatalf("bad line: %v, want the file and line named", err)
	}
	empty := filepath.Join(dir, "empty.txt")
	if err := os.WriteFile(empty, []byte("# nothing\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSerials(empty); err == nil || !strings.Contains(err.Error(), "no serials") {
		t.Fatalf("empty file: %v", err)
	}
}
