package pkcs11

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
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
	uninit     bool // C_Finalize called and no C_Initialize since
	down       uint // while non-zero, every call fails with this code (device gone)
	stuck      bool // after down: CKR_GENERAL_ERROR until C_Finalize + C_Initialize
	inits      int
	key        *ecdsa.PrivateKey
	next       p11.SessionHandle
	live       map[p11.SessionHandle]bool
	loggedIn   bool
	wrongPIN   bool
	opened     int
	dropOnSign int // fail this many Sign calls with CKR_SESSION_HANDLE_INVALID
	refuseCopy bool
	copies     map[p11.ObjectHandle]p11.SessionHandle // session-object copy -> owner session
	copyTmpl   []*p11.Attribute                       // the last CopyObject template
	copyLabel  string                                 // CKA_LABEL a copy reports; default "k" (the URI object)
	signedWith []p11.ObjectHandle
}

// faultLocked is the error every call fails with while the device is
// down, stuck or the module not initialized.
func (f *fakeP11) faultLocked() error {
	switch {
	case f.uninit:
		return p11.Error(p11.CKR_CRYPTOKI_NOT_INITIALIZED)
	case f.down != 0:
		return p11.Error(f.down)
	case f.stuck:
		return p11.Error(p11.CKR_GENERAL_ERROR)
	}
	return nil
}

// fail takes the device away (code) or brings it back (0): its sessions
// and session objects are gone either way; stuck makes the module fail
// with CKR_GENERAL_ERROR after the device returns until it is
// re-initialised.
func (f *fakeP11) fail(code uint, stuck bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if code != 0 {
		clear(f.live)
		f.loggedIn = false
		f.stuck = stuck
	}
	f.down = code
}

func (f *fakeP11) Initialize(...p11.InitializeOption) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.uninit {
		return p11.Error(p11.CKR_CRYPTOKI_ALREADY_INITIALIZED)
	}
	if f.down != 0 {
		return p11.Error(p11.CKR_GENERAL_ERROR)
	}
	f.uninit, f.stuck = false, false
	f.inits++
	return nil
}

func (f *fakeP11) Finalize() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.uninit {
		return p11.Error(p11.CKR_CRYPTOKI_NOT_INITIALIZED)
	}
	f.uninit = true
	clear(f.live)
	f.loggedIn = false
	return nil
}

// CopyObject makes a session-object copy of the key owned by session h.
func (f *fakeP11) CopyObject(h p11.SessionHandle, _ p11.ObjectHandle, tmpl []*p11.Attribute) (p11.ObjectHandle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.faultLocked(); err != nil {
		return 0, err
	}
	f.copyTmpl = tmpl
	if f.refuseCopy {
		return 0, p11.Error(p11.CKR_ACTION_PROHIBITED)
	}
	if f.copies == nil {
		f.copies = map[p11.ObjectHandle]p11.SessionHandle{}
	}
	o := p11.ObjectHandle(100 + len(f.copies))
	f.copies[o] = h
	return o, nil
}

func (f *fakeP11) GetSlotList(bool) ([]uint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.faultLocked(); err != nil {
		return nil, err
	}
	return []uint{1}, nil
}
func (f *fakeP11) GetTokenInfo(uint) (p11.TokenInfo, error) {
	return p11.TokenInfo{Label: "fake"}, nil
}
func (f *fakeP11) OpenSession(uint, uint) (p11.SessionHandle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.faultLocked(); err != nil {
		return 0, err
	}
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
	if err := f.faultLocked(); err != nil {
		return err
	}
	if f.wrongPIN {
		return p11.Error(p11.CKR_PIN_INCORRECT)
	}
	f.loggedIn = true
	return nil
}
func (f *fakeP11) FindObjectsInit(p11.SessionHandle, []*p11.Attribute) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.faultLocked()
}
func (f *fakeP11) FindObjects(p11.SessionHandle, int) ([]p11.ObjectHandle, bool, error) {
	return []p11.ObjectHandle{7}, false, nil
}
func (f *fakeP11) FindObjectsFinal(p11.SessionHandle) error { return nil }

// GetAttributeValue answers class, label and id of a live key copy only.
func (f *fakeP11) GetAttributeValue(_ p11.SessionHandle, o p11.ObjectHandle, want []*p11.Attribute) ([]*p11.Attribute, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if owner, ok := f.copies[o]; !ok || (!f.live[owner] && f.copyLabel == "") {
		return nil, p11.Error(p11.CKR_OBJECT_HANDLE_INVALID) // (copyLabel set: the number was reused)
	}
	out := make([]*p11.Attribute, len(want))
	for i, a := range want {
		switch a.Type {
		case p11.CKA_CLASS:
			out[i] = p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY)
		case p11.CKA_LABEL:
			label := f.copyLabel
			if label == "" {
				label = "k"
			}
			out[i] = p11.NewAttribute(p11.CKA_LABEL, label)
		default:
			out[i] = p11.NewAttribute(a.Type, []byte{})
		}
	}
	return out, nil
}
func (f *fakeP11) SignInit(h p11.SessionHandle, _ []*p11.Mechanism, o p11.ObjectHandle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.faultLocked(); err != nil {
		return err
	}
	if !f.live[h] {
		return p11.Error(p11.CKR_SESSION_HANDLE_INVALID)
	}
	if owner, ok := f.copies[o]; ok && !f.live[owner] {
		return p11.Error(p11.CKR_KEY_HANDLE_INVALID) // a session object dies with its session
	}
	f.signedWith = append(f.signedWith, o)
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
	return fakeSignerCfg(t, f, Config{Sessions: 1, Timeout: time.Second})
}

func fakeSignerCfg(t *testing.T, f *fakeP11, cfg Config) *Signer {
	t.Helper()
	u, err := ParseURI("pkcs11:token=fake;object=k?module-path=/fake.so&pin-source=env:NONE")
	if err != nil {
		t.Fatal(err)
	}
	if f.live == nil {
		f.live = map[p11.SessionHandle]bool{}
	}
	mod := &module{path: "/fake.so", ctx: f, refs: 1, ownInit: true}
	s := newSigner(mod, u, "1234", cfg)
	s.pub, s.keyType, s.slot = f.key.Public(), p11.CKK_EC, 1
	s.sessionCopy = false // tests that want the copy turn it on
	s.ks.Store(&keyState{handle: 7, gen: 1})
	t.Cleanup(func() { s.Close() })
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

func TestSessionKeyCopy(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	digest := sha256.Sum256([]byte("tier0"))
	sign := func(t *testing.T, s *Signer) {
		t.Helper()
		sig, err := s.SignContext(context.Background(), digest[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig) {
			t.Fatal("signature does not verify")
		}
	}
	last := func(f *fakeP11) p11.ObjectHandle {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.signedWith[len(f.signedWith)-1]
	}

	t.Run("signs with the copy, and re-copies when its owner session dies", func(t *testing.T) {
		f := &fakeP11{key: key, live: map[p11.SessionHandle]bool{}}
		s := fakeSigner(t, f)
		s.sessionCopy = true
		s.installKey(7, 1)
		owner := s.ks.Load().owner
		if owner == 0 {
			t.Fatal("no session copy installed")
		}
		sign(t, s)
		if got := last(f); got != 100 {
			t.Fatalf("signed with object %d, want the copy 100", got)
		}
		if tm := f.copyTmpl; len(tm) != 1 || tm[0].Type != p11.CKA_TOKEN || len(tm[0].Value) != 1 || tm[0].Value[0] != 0 {
			t.Fatalf("CopyObject template %v, want only CKA_TOKEN=false", tm)
		}
		// A pool session is lost but the copy lives on: the session is
		// re-opened and the same copy used, not a new one made.
		f.mu.Lock()
		f.dropOnSign = 1
		f.mu.Unlock()
		sign(t, s)
		if ks := s.ks.Load(); ks.gen != 1 || ks.handle != 100 || len(f.copies) != 1 {
			t.Fatalf("after losing a pool session: key state %+v, %d copies; want copy 100 at generation 1", ks, len(f.copies))
		}
		// A copy's handle that now names another object (a module reusing
		// numbers) is not taken for our copy: a new copy is made.
		_ = f.CloseSession(s.ks.Load().owner) // the copy dies with it...
		f.mu.Lock()
		f.copyLabel = "other" // ...and its number now names another object
		f.mu.Unlock()
		sign(t, s)
		f.mu.Lock()
		f.copyLabel = ""
		f.mu.Unlock()
		if ks := s.ks.Load(); ks.gen != 2 || ks.handle != 101 {
			t.Fatalf("after the copy's handle changed meaning: key state %+v, want copy 101 at generation 2", ks)
		}
		// The token drops the owner session: the copy is gone with it.
		_ = f.CloseSession(s.ks.Load().owner)
		sign(t, s)
		if got := last(f); got != 102 {
			t.Fatalf("after losing the copy, signed with object %d, want the new copy 102", got)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.live) != 0 {
			t.Fatalf("sessions left open after Close: %v", f.live)
		}
	})
	t.Run("a refused copy falls back to the token object", func(t *testing.T) {
		f := &fakeP11{key: key, live: map[p11.SessionHandle]bool{}, refuseCopy: true}
		s := fakeSigner(t, f)
		s.sessionCopy = true
		s.installKey(7, 1)
		if s.ks.Load().owner != 0 {
			t.Fatal("copy installed although the module refused it")
		}
		sign(t, s)
		if got := last(f); got != 7 {
			t.Fatalf("signed with object %d, want the token key 7", got)
		}
	})
}
