package witness

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/internal/tlog"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

func signedNote(t *testing.T, k *storagetest.AuditKey, size int64) []byte {
	t.Helper()
	note, err := tlog.Sign(tlog.Checkpoint{Origin: tlog.Origin("example.org"), Size: size, Root: tlog.Hash{byte(size)}}, k.Signer, k.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	return note
}

func cosign(note []byte, name string, key ed25519.PrivateKey) []byte {
	return append(append([]byte(nil), note...), Cosign(name, key, tlog.NoteText(note), time.Unix(1900000000, 0))...)
}

// TestAddTo: the server side of cosignature submission keeps the log's
// signature, appends each witness's line once, and refuses a line that
// does not verify, a note of another checkpoint and a bad witness name.
func TestAddTo(t *testing.T) {
	k := storagetest.NewAuditKey(t)
	stored := signedNote(t, k, 10)
	pub1, key1, _ := ed25519.GenerateKey(rand.Reader)
	pub2, key2, _ := ed25519.GenerateKey(rand.Reader)
	got, added, err := AddTo(stored, cosign(stored, "w1.example", key1), "w1.example", pub1)
	if err != nil || !added {
		t.Fatalf("AddTo w1 = %v, %v", added, err)
	}
	again, added, err := AddTo(got, cosign(stored, "w1.example", key1), "w1.example", pub1)
	if err != nil || added || string(again) != string(got) {
		t.Fatalf("AddTo w1 again = %v, %v: want unchanged", added, err)
	}
	// w2 cosigned a copy that already carried w1's line.
	got, added, err = AddTo(got, cosign(got, "w2.example", key2), "w2.example", pub2)
	if err != nil || !added {
		t.Fatalf("AddTo w2 = %v, %v", added, err)
	}
	if _, err := tlog.Open(got, k.Cert.Raw, k.Roots()); err != nil {
		t.Fatalf("the log's signature no longer verifies: %v", err)
	}
	ws := map[string]ed25519.PublicKey{"w1.example": pub1, "w2.example": pub2, "w3.example": pub1}
	if by := CosignedBy(got, ws); !slices.Equal(by, []string{"w1.example", "w2.example"}) {
		t.Fatalf("CosignedBy = %v", by)
	}
	if n := len(sigLines(got)); n != 3 {
		t.Fatalf("%d signature lines, want 3:\n%s", n, got)
	}
	other := signedNote(t, k, 11)
	for _, tc := range []struct {
		name     string
		cosigned []byte
		witness  string
		pub      ed25519.PublicKey
		want     string
	}{
		{"wrong key", cosign(stored, "w1.example", key1), "w1.example", pub2, "no valid tlog-cosignature/v1 of \"w1.example\" with key"},
		{"other name", cosign(stored, "w1.example", key1), "w9.example", pub1, "no valid tlog-cosignature/v1 of \"w9.example\""},
		{"other checkpoint", cosign(other, "w1.example", key1), "w1.example", pub1, "the cosigned note is not of this checkpoint"},
		{"no cosignature", stored, "w1.example", pub1, "no valid tlog-cosignature/v1"},
		{"name with a space", cosign(stored, "w 1", key1), "w 1", pub1, "want a witness name"},
		{"short key", cosign(stored, "w1.example", key1), "w1.example", pub1[:31], "want a witness name"},
	} {
		_, _, err := AddTo(stored, tc.cosigned, tc.witness, tc.pub)
		if !errors.Is(err, ErrCosignature) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.name, err, tc.want)
		}
	}
	full := stored
	for i := 0; i <= MaxCosignatures; i++ {
		pub, key, _ := ed25519.GenerateKey(rand.Reader)
		name := fmt.Sprintf("w%d.example", i)
		full, added, err = AddTo(full, cosign(stored, name, key), name, pub)
		if i < MaxCosignatures && (err != nil || !added) {
			t.Fatalf("cosignature %d: %v", i, err)
		}
		if i == MaxCosignatures && (!errors.Is(err, ErrCosignature) || !strings.Contains(err.Error(), "carries 32 cosignatures already")) {
			t.Fatalf("cosignature %d beyond the limit: %v", i, err)
		}
	}
}

func TestParseKeys(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	ws, err := ParseKeys([]string{fmt.Sprintf("w1=%x", []byte(pub))})
	if err != nil || !ws["w1"].Equal(pub) {
		t.Fatalf("ParseKeys = %v, %v", ws, err)
	}
	for _, bad := range []string{"w1", "=00", fmt.Sprintf("w1=%x", []byte(pub[:31])), "w1=zz"} {
		if _, err := ParseKeys([]string{bad}); err == nil || !strings.Contains(err.Error(), "want NAME=<Ed25519 public key, 64 hex digits>") {
			t.Errorf("ParseKeys(%q) = %v", bad, err)
		}
	}
}

// TestSameLogKey: a log key pinned by one certificate matches a re-issued
// certificate of the same key (servers re-issue it at every start), not
// another audit key of the same bundle.
func TestSameLogKey(t *testing.T) {
	k := storagetest.NewAuditKey(t)
	td := spiffeid.RequireTrustDomainFromString("example.org")
	reissued, err := ca.NewAuditKeyCert(td, ca.Issuer{Signer: k.RootKey, Cert: k.Root}, k.Signer.Public(), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherCert, err := ca.NewAuditKeyCert(td, ca.Issuer{Signer: k.RootKey, Cert: k.Root}, other.Public(), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !SameLogKey(reissued.Raw, k.Cert.Raw) || !SameLogKey(otherCert.Raw, k.Cert.Raw, otherCert.Raw) {
		t.Fatal("a certificate of a pinned key did not match")
	}
	if SameLogKey(otherCert.Raw, k.Cert.Raw) || SameLogKey([]byte("junk"), k.Cert.Raw) || SameLogKey(k.Cert.Raw) {
		t.Fatal("another key matched")
	}
}
