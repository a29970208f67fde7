package auditexport

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/internal/tlog"
	"github.com/tier0-ca/tier0/internal/witness"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

func TestCosigned(t *testing.T) {
	k := storagetest.NewAuditKey(t)
	e, err := Read(bytes.NewReader(exportOf(t, k)))
	if err != nil {
		t.Fatal(err)
	}
	ws := map[string]ed25519.PublicKey{}
	keys := map[string]ed25519.PrivateKey{}
	for _, n := range []string{"w1", "w2", "w3"} {
		pub, key, _ := ed25519.GenerateKey(rand.Reader)
		ws[n], keys[n] = pub, key
	}
	top := e.trees[len(e.trees)-1]
	cosign := func(note []byte, names ...string) []byte {
		out := bytes.Clone(note)
		for _, n := range names {
			out = append(out, witness.Cosign(n, keys[n], tlog.NoteText(note), time.Now())...)
		}
		return out
	}
	notes := [][]byte{cosign(top.Note, "w1", "w2"), cosign(e.trees[0].Note, "w3")}
	if size, err := e.Cosigned(notes, ws, 2); err != nil || size != top.Size {
		t.Fatalf("2 of 3: %d, %v", size, err)
	}
	if _, err := e.Cosigned(notes, ws, 3); err == nil {
		t.Fatal("3 of 3 accepted with two cosignatures")
	}
	// A cosignature by an unknown key does not count.
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	fake := append(bytes.Clone(top.Note), witness.Cosign("w3", stranger, tlog.NoteText(top.Note), time.Now())...)
	if _, err := e.Cosigned([][]byte{fake, notes[0]}, ws, 3); err == nil {
		t.Fatal("a forged cosignature counted")
	}
	// A cosigned checkpoint of another tree (what a witness saw elsewhere).
	other := tlog.Checkpoint{Origin: tlog.Origin("example.org"), Size: top.Size}
	msg, _ := tlog.Sign(other, k.Signer, k.Cert.Raw)
	if _, err := e.Cosigned([][]byte{cosign(msg, "w1", "w2")}, ws, 1); err == nil {
		t.Fatal("a cosigned checkpoint of another tree was accepted")
	}
}
