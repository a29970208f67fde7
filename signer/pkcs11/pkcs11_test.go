package pkcs11

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	p11 "github.com/miekg/pkcs11"

	"github.com/tier0-ca/tier0/signer/internal/errs"
	"github.com/tier0-ca/tier0/signer/internal/softhsmtest"
)

func TestMain(m *testing.M) { os.Exit(softhsmtest.Main(m)) }

func open(t *testing.T, uri string, cfg Config) *Signer {
	t.Helper()
	s, err := Open(context.Background(), uri, cfg)
	if err != nil {
		t.Fatalf("Open(%s): %v", uri, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func signVerify(t *testing.T, s *Signer) {
	t.Helper()
	d := sha256.Sum256([]byte("tier0"))
	sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), d[:], sig) {
		t.Fatal("signature does not verify")
	}
}

func TestOpenFaults(t *testing.T) {
	tk := softhsmtest.Get(t)
	dir := t.TempDir()
	wrongPIN := filepath.Join(dir, "wrong-pin")
	if err := os.WriteFile(wrongPIN, []byte("9999"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(dir, "module.so")
	if err := os.WriteFile(text, []byte("not a shared library\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	uri := func(path, query string) string { return "pkcs11:" + path + "?" + query }
	good := "module-path=" + tk.Module + "&pin-source=file:" + tk.PINFile
	for _, tc := range []struct{ name, uri, err string }{
		{"wrong PIN", uri("token=tier0-test;object=ec-key", "module-path="+tk.Module+"&pin-source=file:"+wrongPIN),
			"signer/pkcs11: login to token pkcs11:token=tier0-test;object=ec-key failed: incorrect PIN (from pin-source file:" + wrongPIN + "): pkcs11: 0xA0: CKR_PIN_INCORRECT"},
		{"missing token", uri("token=nope;object=ec-key", good),
			`signer/pkcs11: no token matching pkcs11:token=nope;object=ec-key in module ` + tk.Module + ` (tokens present: "tier0-test" (serial `},
		{"missing object", uri("token=tier0-test;object=nope", good),
			"signer/pkcs11: no private key matching pkcs11:token=tier0-test;object=nope on the token"},
		{"id and label disagree", uri("token=tier0-test;object=ec-key;id=%02", good),
			"signer/pkcs11: no private key matching pkcs11:token=tier0-test;object=ec-key;id=%02 on the token"},
		{"secret key", uri("token=tier0-test;object=aes-key", good),
			"signer/pkcs11: pkcs11:token=tier0-test;object=aes-key is a secret (symmetric) key, not a private key"},
		{"unsupported curve", uri("token=tier0-test;object=p521-key", good),
			"signer/pkcs11: pkcs11:token=tier0-test;object=p521-key: unsupported EC curve 1.3.132.0.35 (want P-256 or P-384)"},
		{"text file module", uri("token=tier0-test;object=ec-key", "module-path="+text+"&pin-source=file:"+tk.PINFile),
			"signer/pkcs11: module-path " + text + " is not a loadable PKCS#11 module (dlopen or C_GetFunctionList failed)"},
		{"executable module", uri("token=tier0-test;object=ec-key", "module-path=/bin/true&pin-source=file:"+tk.PINFile),
			"signer/pkcs11: module-path /bin/true is not a loadable PKCS#11 module (dlopen or C_GetFunctionList failed)"},
		{"missing module", uri("token=tier0-test;object=ec-key", "module-path=/nonexistent/p11.so&pin-source=file:"+tk.PINFile),
			"signer/pkcs11: module-path: stat /nonexistent/p11.so: no such file or directory"},
		{"unset PIN env", uri("token=tier0-test;object=ec-key", "module-path="+tk.Module+"&pin-source=env:TIER0_TEST_UNSET_PIN"),
			"signer/pkcs11: pin-source env:TIER0_TEST_UNSET_PIN: variable is unset or empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(context.Background(), tc.uri, Config{})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.HasPrefix(err.Error(), tc.err) {
				t.Errorf("Open error\n got: %v\nwant: %s", err, tc.err)
			}
			for _, pin := range []string{tk.PIN, "9999"} {
				if strings.Contains(err.Error(), pin) {
					t.Errorf("error contains a PIN: %v", err)
				}
			}
		})
	}
	// The failed opens left the module usable.
	signVerify(t, open(t, tk.URI("object=ec-key"), Config{}))
}

func TestRSAMechanisms(t *testing.T) {
	tk := softhsmtest.Get(t)
	s := open(t, tk.URI("id=%02"), Config{Sessions: 1})
	pub := s.Public().(*rsa.PublicKey)
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		hh := h.New()
		hh.Write([]byte("tier0"))
		d := hh.Sum(nil)
		sig, err := s.Sign(rand.Reader, d, h)
		if err != nil {
			t.Fatalf("%v PKCS1v15: %v", h, err)
		}
		if err := rsa.VerifyPKCS1v15(pub, h, d, sig); err != nil {
			t.Errorf("%v PKCS1v15: %v", h, err)
		}
		for _, salt := range []int{rsa.PSSSaltLengthEqualsHash, rsa.PSSSaltLengthAuto, 20} {
			opts := &rsa.PSSOptions{SaltLength: salt, Hash: h}
			sig, err := s.Sign(rand.Reader, d, opts)
			if err != nil {
				t.Fatalf("%v PSS salt %d: %v", h, salt, err)
			}
			if err := rsa.VerifyPSS(pub, h, d, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}); err != nil {
				t.Errorf("%v PSS salt %d: %v", h, salt, err)
			}
		}
	}
	d := sha512.Sum512_224([]byte("x"))
	if _, err := s.Sign(rand.Reader, d[:], crypto.SHA512_224); err == nil || err.Error() != "signer/pkcs11: RSA PKCS #1 v1.5 with SHA-512/224 is not supported (want SHA-256/384/512)" {
		t.Errorf("SHA-512/224: %v", err)
	}
}

// sideSession opens a session on the token behind the signer's back.
func sideSession(t *testing.T, s *Signer) p11.SessionHandle {
	t.Helper()
	h, err := raw(s).OpenSession(s.slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestSessionRecovery(t *testing.T) {
	tk := softhsmtest.Get(t)
	s := open(t, tk.URI("object=ec-key"), Config{Sessions: 4})
	signVerify(t, s)
	first := *s.ks.Load()
	if first.owner == 0 {
		t.Fatal("SoftHSM2 allows C_CopyObject, but the signer uses the token object")
	}
	if off := open(t, tk.URI("object=ec-key")+"&x-session-copy=false", Config{Sessions: 1}); off.ks.Load().owner != 0 {
		t.Fatal("x-session-copy=false made a session copy")
	} else {
		signVerify(t, off)
	}

	t.Run("all sessions closed underneath", func(t *testing.T) {
		// What a token removal or HSM restart looks like to the client:
		// every session handle is gone and the login with them.
		if err := raw(s).CloseAllSessions(s.slot); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() { signVerify(t, s) })
		}
		wg.Wait()
		// The copy died with its owner session: a new one replaced it once.
		if ks := s.ks.Load(); ks.owner == 0 || ks.gen != first.gen+1 {
			t.Fatalf("key state after recovery = %+v, want a new copy at generation %d", ks, first.gen+1)
		}
	})

	t.Run("logged out underneath", func(t *testing.T) {
		h := sideSession(t, s)
		if err := raw(s).Logout(h); err != nil {
			t.Fatal(err)
		}
		_ = raw(s).CloseSession(h)
		for range 8 {
			signVerify(t, s)
		}
	})

	t.Run("recovery fails: PIN changed", func(t *testing.T) {
		h := sideSession(t, s)
		if err := raw(s).Login(h, p11.CKU_USER, tk.PIN); err != nil && !errors.Is(err, p11.Error(p11.CKR_USER_ALREADY_LOGGED_IN)) {
			t.Fatal(err)
		}
		if err := raw(s).SetPIN(h, tk.PIN, "4321"); err != nil {
			t.Fatal(err)
		}
		if err := raw(s).CloseAllSessions(s.slot); err != nil {
			t.Fatal(err)
		}
		restore := func() {
			h := sideSession(t, s)
			defer raw(s).CloseSession(h)
			if err := raw(s).Login(h, p11.CKU_USER, "4321"); err != nil && !errors.Is(err, p11.Error(p11.CKR_USER_ALREADY_LOGGED_IN)) {
				t.Fatal(err)
			}
			if err := raw(s).SetPIN(h, "4321", tk.PIN); err != nil {
				t.Fatal(err)
			}
		}
		d := sha256.Sum256([]byte("x"))
		_, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
		restore()
		if err == nil {
			t.Fatal("Sign succeeded with the PIN changed underneath")
		}
		const want = "signer/pkcs11: sign failed (pkcs11: 0xB3: CKR_SESSION_HANDLE_INVALID) and session recovery failed: signer/pkcs11: login to token pkcs11:token=tier0-test;object=ec-key failed: incorrect PIN"
		if !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Sign error\n got: %v\nwant prefix: %s", err, want)
		}
		if strings.Contains(err.Error(), "4321") || strings.Contains(err.Error(), tk.PIN) {
			t.Errorf("error contains a PIN: %v", err)
		}
		// With the PIN restored, the next signs recover.
		for range 8 {
			signVerify(t, s)
		}
	})
}

func TestSessionWaitTimeout(t *testing.T) {
	tk := softhsmtest.Get(t)
	s := open(t, tk.URI("object=ec-key"), Config{Sessions: 1, Timeout: 50 * time.Millisecond})
	sl := <-s.pool // hold the only session
	d := sha256.Sum256([]byte("x"))
	start := time.Now()
	_, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
	if !errors.Is(err, errs.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sign with no free session = %v, want ErrTimeout", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("timeout took %v", el)
	}
	s.pool <- sl
	signVerify(t, s)
}

func TestCloseWaitsAndRejects(t *testing.T) {
	tk := softhsmtest.Get(t)
	s, err := Open(context.Background(), tk.URI("object=ec-key"), Config{Sessions: 2})
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("x"))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if _, err := s.Sign(rand.Reader, d[:], crypto.SHA256); err != nil && !errors.Is(err, errs.ErrClosed) {
					t.Errorf("Sign during Close: %v", err)
					return
				}
			}
		})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if _, err := s.Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, errs.ErrClosed) {
		t.Fatalf("Sign after Close = %v", err)
	}
}

// raw is the signer's module as loaded, for calls the signer never makes.
func raw(s *Signer) *p11.Ctx { return s.mod.ctx.(*p11.Ctx) }
