package pkcs11

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"time"

	p11 "github.com/miekg/pkcs11"

	"github.com/tier0-ca/tier0/signer/internal/errs"
	"github.com/tier0-ca/tier0/signer/internal/health"
)

// Fault injection through the narrowed P11 interface: a device that goes
// away (every call fails) and comes back stuck (CKR_GENERAL_ERROR until the
// module is re-initialised, as tpm2-pkcs11 behaves after its TPM broker
// restarts). The SoftHSM2-backed wrapper module (internal/hsmtest) runs the
// same scenario through a real module in faultmodule_test.go and end to end
// in cmd/tier0.

func faultCfg() Config {
	return Config{Sessions: 2, Timeout: time.Second, BreakerThreshold: 3, ProbeMin: time.Millisecond, ProbeMax: 5 * time.Millisecond}
}

// copyingSigner is a fake-backed signer with a session copy of the key.
func copyingSigner(t *testing.T) (*Signer, *fakeP11, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f := &fakeP11{key: key}
	s := fakeSignerCfg(t, f, faultCfg())
	s.sessionCopy = true
	s.installKey(7, 1)
	return s, f, key
}

// signUntilOpen signs until the breaker answers circuit_open, passing each
// earlier failure (the i-th) to check; every failure must be an
// *UnavailableError, and the breaker must open within limit signs.
func signUntilOpen(t *testing.T, s *Signer, limit int, check func(i int, err error)) *errs.UnavailableError {
	t.Helper()
	d := sha256.Sum256([]byte("tier0"))
	for i := 0; ; i++ {
		_, err := s.SignContext(context.Background(), d[:], crypto.SHA256)
		var ue *errs.UnavailableError
		if !errors.As(err, &ue) || !errors.Is(err, errs.ErrUnavailable) {
			t.Fatalf("sign %d with the device away = %v, want *UnavailableError", i, err)
		}
		if ue.Reason == errs.ReasonCircuitOpen {
			return ue
		}
		if i >= limit {
			t.Fatalf("breaker still closed after %d failed signs: %v", i+1, err)
		}
		check(i, err)
	}
}

func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
}

func TestDeviceFaultOpensBreakerAndReinitRecovers(t *testing.T) {
	for _, code := range []uint{p11.CKR_DEVICE_REMOVED, p11.CKR_GENERAL_ERROR, p11.CKR_DEVICE_ERROR, p11.CKR_TOKEN_NOT_PRESENT} {
		t.Run(p11.Error(code).Error(), func(t *testing.T) {
			s, f, key := copyingSigner(t)
			digest := sha256.Sum256([]byte("tier0"))
			if _, err := s.SignContext(context.Background(), digest[:], crypto.SHA256); err != nil {
				t.Fatal(err)
			}
			f.fail(code, true)
			ue := signUntilOpen(t, s, 3, func(i int, err error) {
				if errs.ReasonOf(err) != errs.ReasonUnavailable || !errors.Is(err, errs.ErrDevice) || !errors.Is(err, p11.Error(code)) {
					t.Fatalf("sign %d with the device gone = %v, want an unavailable device error before the breaker opens", i, err)
				}
			})
			if ue.RetryAfter <= 0 || ue.RetryAfter > 5*time.Millisecond {
				t.Fatalf("RetryAfter = %v, want the time to the next probe", ue.RetryAfter)
			}
			if h := s.Health(); h.State != health.Down {
				t.Fatalf("health with the device gone: %+v", h)
			}
			// Probes keep failing while the device is away...
			pollUntil(t, "failed probes", func() bool { return s.Health().Failures >= 3 })
			// ...and while it is back but the module is stuck; the probe's
			// re-initialisation clears that, without any traffic.
			f.fail(0, false)
			pollUntil(t, "recovery", func() bool { return s.Health().State == health.Up })
			f.mu.Lock()
			inits, stuck := f.inits, f.stuck
			f.mu.Unlock()
			if inits == 0 || stuck {
				t.Fatalf("recovered without re-initialising the module (C_Initialize calls: %d)", inits)
			}
			sig, err := s.SignContext(context.Background(), digest[:], crypto.SHA256)
			if err != nil {
				t.Fatalf("sign after recovery: %v", err)
			}
			if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig) {
				t.Fatal("signature after recovery does not verify")
			}
			// The session copy of the key was made again in the new module
			// generation.
			if ks := s.ks.Load(); ks.owner == 0 || ks.modGen != s.mod.gen.Load() || ks.handle == 100 {
				t.Fatalf("key state after recovery: %+v (module generation %d)", ks, s.mod.gen.Load())
			}
		})
	}
}

// TestReinitSharedModule: a re-initialisation by one signer's probe
// invalidates the sessions and key handles of another signer on the same
// module; that one re-opens them on its next sign without failing.
func TestReinitSharedModule(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	digest := sha256.Sum256([]byte("tier0"))
	f := &fakeP11{key: key}
	s1 := fakeSignerCfg(t, f, faultCfg())
	s2 := newSigner(s1.mod, s1.uri, "1234", faultCfg())
	s2.pub, s2.keyType, s2.slot, s2.sessionCopy = key.Public(), p11.CKK_EC, 1, true
	s2.installKey(7, 1)
	s1.mod.refs++
	t.Cleanup(func() { s2.Close() })
	for _, s := range []*Signer{s1, s2} {
		if _, err := s.SignContext(context.Background(), digest[:], crypto.SHA256); err != nil {
			t.Fatal(err)
		}
	}
	gen := s1.mod.gen.Load()
	if err := s1.probe(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s1.mod.gen.Load() == gen {
		t.Fatal("the probe did not re-initialise the module")
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := s2.SignContext(context.Background(), digest[:], crypto.SHA256); err != nil {
				t.Errorf("sign on the other signer after a re-initialisation: %v", err)
			}
		})
	}
	wg.Wait()
	if h := s2.Health(); h.State != health.Up {
		t.Fatalf("the other signer's health: %+v", h)
	}
}

// TestConcurrentSignsThroughAnOutage signs from many goroutines while the
// device goes away and comes back: every call either signs or fails with an
// *UnavailableError, and signing resumes by itself. Run with -race.
func TestConcurrentSignsThroughAnOutage(t *testing.T) {
	s, f, _ := copyingSigner(t)
	digest := sha256.Sum256([]byte("tier0"))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := s.SignContext(context.Background(), digest[:], crypto.SHA256)
				if err != nil && !errors.Is(err, errs.ErrUnavailable) {
					t.Errorf("sign during an outage: %v", err)
					return
				}
			}
		})
	}
	f.fail(p11.CKR_DEVICE_REMOVED, true)
	pollUntil(t, "breaker open", func() bool { return s.Health().State == health.Down })
	f.fail(0, false)
	pollUntil(t, "recovery", func() bool { return s.Health().State == health.Up })
	close(stop)
	wg.Wait()
	if _, err := s.SignContext(context.Background(), digest[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
}

func TestCloseDuringOutage(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	digest := sha256.Sum256([]byte("tier0"))
	f := &fakeP11{key: key}
	s := fakeSignerCfg(t, f, faultCfg())
	f.fail(p11.CKR_DEVICE_REMOVED, false)
	pollUntil(t, "breaker open", func() bool {
		_, _ = s.SignContext(context.Background(), digest[:], crypto.SHA256)
		return s.Health().State == health.Down
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SignContext(context.Background(), digest[:], crypto.SHA256); !errors.Is(err, errs.ErrClosed) {
		t.Fatalf("sign after Close = %v", err)
	}
}
