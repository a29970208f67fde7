package backupfile

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/hatest"
)

// snapshot takes a real backup snapshot of a single node holding an entry
// and five journal records.
func snapshot(t *testing.T) (Header, []byte, ha.JournalStatus) {
	t.Helper()
	ctx := context.Background()
	n := hatest.Populated(t, 5)
	meta, rc, err := n.Backup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	payload, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(meta)
	h := Header{TrustDomain: "example.org", NodeID: "n1", CreatedAt: time.Now(), RaftIndex: meta.Index, RaftTerm: meta.Term, RaftMeta: raw, Size: meta.Size}
	return h, payload, n.JournalStatus()
}

func TestCreateVerifyRoundTrip(t *testing.T) {
	h, payload, js := snapshot(t)
	out := filepath.Join(t.TempDir(), "b.tier0")
	keys := map[string][]byte{"ca/root.key": []byte("-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n")}
	pass := []byte("correct horse battery")
	m, err := Create(out, h, bytes.NewReader(payload), keys, pass)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file mode: %v %v", st, err)
	}
	b, info, err := Verify(out)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := b.Manifest
	if got.Journal.Seq != js.Seq || js.Seq != 5+2 || got.Journal.Head != hex.EncodeToString(js.Head) || info.Seq != js.Seq || // 5 records, 2 admin events (hatest.Populated) got.State.Entries != 1 ||
		got.State.BundleRoots != 1 || got.TrustDomain != "example.org" || got.Raft.Index != h.RaftIndex || got.Payload.Size != int64(len(payload)) {
		t.Fatalf("manifest %+v", got)
	}
	if got.Journal.Seq != m.Journal.Seq || got.Payload.SHA256 != m.Payload.SHA256 {
		t.Fatalf("returned manifest %+v differs from the stored one %+v", m, got)
	}
	back, err := io.ReadAll(b.Payload())
	if err != nil || !bytes.Equal(back, payload) {
		t.Fatalf("payload round trip: %v", err)
	}
	opened, err := got.DevKeys.Open(pass, "example.org")
	if err != nil || !bytes.Equal(opened["ca/root.key"], keys["ca/root.key"]) || len(opened) != 1 {
		t.Fatalf("dev keys round trip: %v %q", err, opened)
	}
	raw, _ := os.ReadFile(out)
	if bytes.Contains(raw, []byte("PRIVATE KEY")) {
		t.Fatal("the dev key is in the file in the clear")
	}
}

func TestCreateRefusesShortOrBadPayload(t *testing.T) {
	h, payload, _ := snapshot(t)
	dir := t.TempDir()
	if _, err := Create(filepath.Join(dir, "a"), h, bytes.NewReader(payload[:len(payload)-10]), nil, nil); err == nil ||
		err.Error() != fmt.Sprintf("backup: received %d of %d bytes", len(payload)-10, len(payload)) {
		t.Fatalf("short stream: %v", err)
	}
	bad := bytes.Clone(payload)
	bad[len(bad)/2] ^= 0xff
	if _, err := Create(filepath.Join(dir, "b"), h, bytes.NewReader(bad), nil, nil); err == nil ||
		!strings.HasPrefix(err.Error(), "backup: the snapshot received does not verify: ") {
		t.Fatalf("corrupt stream: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files left behind: %v", ents)
	}
}

// TestVerifyDetectsDamage: truncation, a flipped bit anywhere, a payload
// altered with the trailing checksum recomputed, and a manifest that
// disagrees with the snapshot are all ErrBadBackup with a precise reason.
func TestVerifyDetectsDamage(t *testing.T) {
	h, payload, _ := snapshot(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if _, err := Create(good, h, bytes.NewReader(payload), nil, nil); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(good)
	mlen := int(raw[len(Magic)])<<24 | int(raw[len(Magic)+1])<<16 | int(raw[len(Magic)+2])<<8 | int(raw[len(Magic)+3])
	payloadAt := len(Magic) + 4 + mlen
	resum := func(b []byte) []byte { // recompute the trailing checksum
		b = bytes.Clone(b[:len(b)-32])
		return append(b, sha(b)...)
	}
	flip := func(i int) []byte { b := bytes.Clone(raw); b[i] ^= 1; return b }
	otherSeq := func() []byte { // a manifest naming another journal seq, consistently checksummed
		var m Manifest
		_ = json.Unmarshal(raw[len(Magic)+4:payloadAt], &m)
		m.Journal.Seq++
		f := filepath.Join(dir, "src")
		if err := Write(f, &m, bytes.NewReader(payload)); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(f)
		return b
	}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "no tier0 backup header"},
		{"not a backup", []byte("hello world, this is not a backup file at all"), "no tier0 backup header"},
		{"truncated", raw[:len(raw)-1], "checksum mismatch (the file is truncated or corrupted)"},
		{"truncated to the header", raw[:len(Magic)+4], "truncated (16 bytes)"},
		{"bit flip in the payload", flip(payloadAt + 10), "checksum mismatch"},
		{"bit flip in the manifest", flip(len(Magic) + 10), "checksum mismatch"},
		{"bit flip in the checksum", flip(len(raw) - 1), "checksum mismatch"},
		{"payload altered, checksum recomputed", resum(flip(payloadAt + 10)), "payload SHA-256 does not match the manifest"},
		{"manifest disagrees with the snapshot", otherSeq(), "does not match the snapshot (seq 7"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
			if err := os.WriteFile(p, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			b, _, err := Verify(p)
			if err == nil {
				b.Close()
				t.Fatal("Verify accepted a damaged file")
			}
			if !errors.Is(err, ErrBadBackup) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Verify: %v, want ErrBadBackup and %q", err, c.want)
			}
		})
	}
}

func TestSealedKeysPassphrase(t *testing.T) {
	keys := map[string][]byte{"ca/root.key": []byte("pem")}
	if _, err := SealKeys(keys, []byte("short"), "example.org"); err == nil || !strings.Contains(err.Error(), "at least 12 characters") {
		t.Fatalf("short passphrase: %v", err)
	}
	s, err := SealKeys(keys, []byte("correct horse battery"), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open([]byte("wrong horse battery!"), "example.org"); !errors.Is(err, ErrPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if _, err := s.Open([]byte("correct horse battery"), "other.org"); !errors.Is(err, ErrPassphrase) {
		t.Fatalf("keys sealed for example.org opened for other.org: %v", err)
	}
	s.Ciphertext[0] ^= 1
	if _, err := s.Open([]byte("correct horse battery"), "example.org"); !errors.Is(err, ErrPassphrase) {
		t.Fatalf("altered ciphertext: %v", err)
	}
	weak := *s
	weak.Iterations = 1000
	if _, err := weak.Open([]byte("correct horse battery"), "example.org"); err == nil || !strings.Contains(err.Error(), "unsupported kdf") {
		t.Fatalf("weak kdf accepted: %v", err)
	}
}

func TestDevKeyPath(t *testing.T) {
	for uri, want := range map[string]string{
		"soft:ca/root.key": "ca/root.key", "soft://ca/x/../root.key": "ca/root.key",
		"soft:/abs/root.key": "", "soft:../escape.key": "", "soft:": "", "pkcs11:token=t;object=o": "", "awskms:///k": "",
	} {
		got, ok := DevKeyPath(uri)
		if got != want || ok != (want != "") {
			t.Errorf("DevKeyPath(%q) = %q, %v; want %q", uri, got, ok, want)
		}
	}
}

// TestReadPassphrase: the file's content without trailing newlines; a
// missing file or a short passphrase is an error.
func TestReadPassphrase(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("x", MinPassphrase)
	for content, want := range map[string]string{long + "\r\n": long, long + " \n\n": long + " ", "short\n": ""} {
		path := filepath.Join(dir, "p")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := ReadPassphrase(path)
		if want == "" {
			if err == nil || !strings.Contains(err.Error(), "at least") {
				t.Errorf("%q: %q %v", content, p, err)
			}
			continue
		}
		if err != nil || string(p) != want {
			t.Errorf("%q: %q %v, want %q", content, p, err, want)
		}
	}
	if _, err := ReadPassphrase(filepath.Join(dir, "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
