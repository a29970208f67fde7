package backupfile

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

func sha(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// FuzzParse: any bytes are either refused with ErrBadBackup-style errors or
// parse into a manifest whose payload lies inside the file and matches its
// SHA-256; never a panic.
func FuzzParse(f *testing.F) {
	m := &Manifest{Format: Format, Version: Version, TrustDomain: "example.org"}
	payload := []byte(`{"version":1}`)
	m.Payload.Size, m.Payload.SHA256 = int64(len(payload)), hex.EncodeToString(sha(payload))
	p := filepath.Join(f.TempDir(), "seed")
	if err := Write(p, m, bytes.NewReader(payload)); err != nil {
		f.Fatal(err)
	}
	seed, _ := os.ReadFile(p)
	if _, err := parse(bytes.NewReader(seed), int64(len(seed)), "seed", &Manifest{}); err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(Magic))
	f.Add(append([]byte(Magic), 0, 0, 0, 2, '{', '}'))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m Manifest
		off, err := parse(bytes.NewReader(data), int64(len(data)), "fuzz", &m)
		if err != nil {
			return
		}
		if off < int64(len(Magic)+4) || m.Payload.Size < 0 || off+m.Payload.Size+sha256.Size != int64(len(data)) {
			t.Fatalf("accepted a payload outside the file: off %d size %d len %d", off, m.Payload.Size, len(data))
		}
		if !bytes.Equal(sha(data[:len(data)-sha256.Size]), data[len(data)-sha256.Size:]) {
			t.Fatal("accepted a file whose checksum does not match")
		}
	})
}
