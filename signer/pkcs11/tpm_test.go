package pkcs11

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/internal/hsmtest"
	"github.com/tier0-ca/tier0/internal/testenv"
	"github.com/tier0-ca/tier0/signer/internal/health"
)

// TestTPMBrokerRestart: a real TPM token (tpm2-pkcs11 on swtpm through
// tpm2-abrmd) whose broker is stopped and started again, the fault of
// issue 13: tpm2-pkcs11 then fails every call until the module is
// re-initialised. The signer fails fast with *UnavailableError while the
// broker is away and signs again by itself once it is back.
func TestTPMBrokerRestart(t *testing.T) {
	tpm := hsmtest.TPMToken(t)
	logs := &testenv.Buffer{}
	s := open(t, tpm.URI, Config{
		Sessions: 2, BreakerThreshold: 3, ProbeMin: 50 * time.Millisecond, ProbeMax: 500 * time.Millisecond, Timeout: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	signVerify(t, s)

	tpm.StopBroker()
	signUntilOpen(t, s, 10, func(int, error) {})
	pollUntil(t, "failed probes", func() bool { return s.Health().Failures >= 2 })
	tpm.StartBroker()
	deadline := time.Now().Add(60 * time.Second)
	for s.Health().State != health.Up {
		if time.Now().After(deadline) {
			t.Fatalf("no recovery within 60s of the broker's return: %+v\n%s", s.Health(), logs.String())
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
	for range 8 {
		signVerify(t, s)
	}
	if out := logs.String(); !strings.Contains(out, "CA key unavailable") || !strings.Contains(out, "CA key available again") {
		t.Fatalf("log lacks the state changes:\n%s", out)
	}
}
