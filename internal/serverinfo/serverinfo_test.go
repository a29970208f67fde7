package serverinfo

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	if _, err := Read(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	want := Info{TrustDomain: "example.org", Servers: []string{"127.0.0.1:1", "127.0.0.1:2"}, NodeID: "n1", HTTP: "127.0.0.1:3", PID: 42}
	if err := Write(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := Read(dir)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Read = %+v, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(dir, File), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(dir); err == nil || !strings.HasPrefix(err.Error(), filepath.Join(dir, File)+": ") {
		t.Fatalf("bad JSON: %v", err)
	}
}
