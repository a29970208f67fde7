package pkcs11

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	p11 "github.com/miekg/pkcs11"
)

// fakeP11 is a one-token module in memory: it signs with a Go key and can
// be told to drop sessions or refuse the PIN, to test session recovery
// without a real module (the SoftHSM2 tests cover the real one).
type fakeP11 struct {
	mu         sync.Mutex
	key        *ecdsa.PrivateKey
	next       p11.SessionHandle
	live       map[p11.SessionHandle]bool
	loggedIn   bool
	wrongPIN   bool
	opened     int
	dropOnSign int // fail this many Sign calls with CKR_SESSION_HANDLE_INVALID
}

func (f *fakeP11) GetSlotList(bool) ([]uint, error) { return []uint{1}, nil }
func (f *fakeP11) GetTokenInfo(uint) (p11.TokenInfo, error) {
	return p11.TokenInfo{Label: "fake"}, nil
}
func (f *fakeP11) OpenSession(uint, uint) (p11.SessionHandle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	f.opened++
	f.live[f.next] = true
	return f.next, nil
}
func (f *fakeP11) CloseSession(h p11.SessionHandle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.live, h)
	return nil
}
func (f *fakeP11) Login(p11.SessionHandle, uint, string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.wrongPIN {
		return p11.Error(p11.CKR_PIN_INCORRECT)
	}
	f.loggedIn = true
	return nil
}
func (f *fakeP11) FindObjectsInit(p11.SessionHandle, []*p11.Attribute) error { return nil }
func (f *fakeP11) FindObjects(p11.SessionHandle, int) ([]p11.ObjectHandle, bool, error) {
	return []p11.ObjectHandle{7}, false, nil
}
func (f *fakeP11) FindObjectsFinal(p11.SessionHandle) error { return nil }
func (f *fakeP11) GetAttributeValue(p11.SessionHandle, p11.ObjectHandle, []*p11.Attribute) ([]*p11.Attribute, error) {
	return nil, errors.New("not needed")
}
func (f *fakeP11) SignInit(h p11.SessionHandle, _ []*p11.Mechanism, _ p11.ObjectHandle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.live[h] {
		return p11.Error(p11.CKR_SESSION_HANDLE_INVALID)
	}
	return nil
}
func (f *fakeP11) Sign(h p11.SessionHandle, digest []byte) ([]byte, error) {
	f.mu.Lock()
	if f.dropOnSign > 0 {
		f.dropOnSign--
		delete(f.live, h)
		f.mu.Unlock()
		return nil, p11.Error(p11.CKR_SESSION_HANDLE_INVALID)
	}
	f.mu.Unlock()
	r, s, err := ecdsa.Sign(rand.Reader, f.key, digest)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out, nil
}

func fakeSigner(t *testing.T, f *fakeP11) *Signer {
	t.Helper()
	u, err := ParseURI("pkcs11:token=fake;object=k?module-path=/fake.so&pin-source=env:NONE")
	if err != nil {
		t.Fatal(err)
	}
	s := &Signer{
		p11: f, uri: u, pin: "1234", timeout: time.Second, log: slog.New(slog.DiscardHandler),
		pub: f.key.Public(), keyType: p11.CKK_EC, key: 7, slot: 1,
		pool: make(chan *session, 1), done: make(chan struct{}),
	}
	s.pool <- &session{}
	return s
}

func TestSessionRecoveryWithFake(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	digest := sha256.Sum256([]byte("tier0"))

	t.Run("dropped session is re-opened and the sign retried once", func(t *testing.T) {
		f := &fakeP11{key: key, live: map[p11.SessionHandle]bool{}, dropOnSign: 1}
		s := fakeSigner(t, f)
		sig, err := s.SignContext(context.Background(), digest[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig) {
			t.Fatal("signature does not verify")
		}
		if f.opened != 2 {
			t.Fatalf("opened %d sessions, want 2 (first use, then recovery)", f.opened)
		}
	})
	t.Run("a second failure is reported, not retried again", func(t *testing.T) {
		f := &fakeP11{key: key, live: map[p11.SessionHandle]bool{}, dropOnSign: 2}
		s := fakeSigner(t, f)
		_, err := s.SignContext(context.Background(), digest[:], crypto.SHA256)
		if err == nil || !strings.Contains(err.Error(), "sign failed after session recovery") {
			t.Fatalf("got %v", err)
		}
		// The next call works with a fresh session.
		if _, err := s.SignContext(context.Background(), digest[:], crypto.SHA256); err != nil {
			t.Fatalf("after the fault: %v", err)
		}
	})
	t.Run("recovery with a changed PIN fails clearly without the PIN", func(t *testing.T) {
		f := &fakeP11{key: key, live: map[p11.SessionHandle]bool{}, dropOnSign: 1, wrongPIN: true}
		s := fakeSigner(t, f)
		_, err := s.SignContext(context.Background(), digest[:], crypto.SHA256)
		if err == nil || !strings.Contains(err.Error(), "incorrect PIN") || strings.Contains(err.Error(), "1234") {
			t.Fatalf("got %v", err)
		}
	})
}
