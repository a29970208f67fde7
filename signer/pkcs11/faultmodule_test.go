package pkcs11

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	p11 "github.com/miekg/pkcs11"

	"github.com/tier0-ca/tier0/internal/hsmtest"
	"github.com/tier0-ca/tier0/internal/testenv"
	"github.com/tier0-ca/tier0/signer/internal/errs"
	"github.com/tier0-ca/tier0/signer/internal/health"
	"github.com/tier0-ca/tier0/signer/internal/softhsmtest"
)

// TestFaultModuleDeviceAwayAndBack: SoftHSM2 behind the fault-injecting
// wrapper module (a real PKCS#11 module, loaded with dlopen). The device
// goes away (all sessions dropped, every call failing), comes back, and in
// the sticky modes keeps failing until the module is re-initialised; the
// signer fails fast with *UnavailableError meanwhile, logs a handful of
// lines, and recovers by itself.
func TestFaultModuleDeviceAwayAndBack(t *testing.T) {
	tk := softhsmtest.Get(t)
	fm := hsmtest.BuildFaultModule(t)
	logs := &testenv.Buffer{}
	s := open(t, fm.URI(t, tk.URI("object=ec-key"), tk.Module), Config{
		Sessions: 4, BreakerThreshold: 3, ProbeMin: 10 * time.Millisecond, ProbeMax: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	signVerify(t, s)
	d := sha256.Sum256([]byte("tier0"))
	for _, tc := range []struct {
		mode   string
		code   uint
		reinit bool // recovery needs C_Finalize/C_Initialize
	}{
		{"removed", p11.CKR_DEVICE_REMOVED, false},
		{"general sticky", p11.CKR_GENERAL_ERROR, true},
		{"removed sticky", p11.CKR_DEVICE_REMOVED, true},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			before := len(strings.Split(logs.String(), "\n"))
			gen := s.mod.gen.Load()
			fm.Fail(t, tc.mode)
			signUntilOpen(t, s, 3, func(i int, err error) {
				if !errors.Is(err, p11.Error(tc.code)) {
					t.Fatalf("sign %d with the device away = %v, want %v before the breaker opens", i, err, p11.Error(tc.code))
				}
			})
			var ue *errs.UnavailableError
			for range 1000 { // fail fast, no log line each
				if _, err := s.Sign(rand.Reader, d[:], crypto.SHA256); !errors.As(err, &ue) || ue.Reason != errs.ReasonCircuitOpen {
					t.Fatalf("sign with the breaker open = %v", err)
				}
			}
			// Probes (re-initialising the module each time) fail while the
			// device is away.
			pollUntil(t, "failed probes", func() bool { return s.Health().Failures >= 2 })
			fm.Restore(t)
			pollUntil(t, "recovery", func() bool { return s.Health().State == health.Up })
			if s.mod.gen.Load() == gen {
				t.Fatal("recovered without re-initialising the module")
			}
			var wg sync.WaitGroup
			for range 16 {
				wg.Go(func() { signVerify(t, s) })
			}
			wg.Wait()
			lines := strings.Split(logs.String(), "\n")[before-1:]
			if len(lines) > 8 {
				t.Fatalf("%d log lines for one outage, want a handful:\n%s", len(lines), strings.Join(lines, "\n"))
			}
			if out := strings.Join(lines, "\n"); !strings.Contains(out, "CA key unavailable") || !strings.Contains(out, "CA key available again") {
				t.Fatalf("log lacks the state changes:\n%s", out)
			}
		})
	}
	if strings.Contains(logs.String(), tk.PIN) {
		t.Fatal("log contains the PIN")
	}
}
