package signer_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tier0-ca/tier0/signer"
	"github.com/tier0-ca/tier0/signer/internal/softhsmtest"
	"github.com/tier0-ca/tier0/signer/signertest"
	"github.com/tier0-ca/tier0/signer/soft"
)

func TestMain(m *testing.M) { os.Exit(softhsmtest.Main(m)) }

func softKey(t testing.TB, rsaKey bool) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key.pem")
	if !rsaKey {
		if err := soft.Generate(path); err != nil {
			t.Fatal(err)
		}
		return path
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if err := soft.WriteKey(path, k); err != nil {
		t.Fatal(err)
	}
	return path
}

func opener(uri string, opts signer.Options) func(t *testing.T) signer.Signer {
	return func(t *testing.T) signer.Signer {
		t.Helper()
		s, err := signer.Open(context.Background(), uri, opts)
		if err != nil {
			t.Fatalf("Open(%s): %v", uri, err)
		}
		return s
	}
}

func TestConformanceSoft(t *testing.T) {
	t.Run("P256", func(t *testing.T) { signertest.Run(t, opener("soft:"+softKey(t, false), signer.Options{})) })
	t.Run("RSA2048", func(t *testing.T) { signertest.Run(t, opener("soft:"+softKey(t, true), signer.Options{})) })
}

func TestConformancePKCS11(t *testing.T) {
	tk := softhsmtest.Get(t)
	t.Run("P256", func(t *testing.T) {
		signertest.Run(t, opener(tk.URI("object=ec-key;id=%01"), signer.Options{Sessions: 4}))
	})
	t.Run("RSA2048", func(t *testing.T) {
		signertest.Run(t, opener(tk.URI("object=rsa-key"), signer.Options{Sessions: 2}))
	})
}

func TestOpenErrors(t *testing.T) {
	loose := filepath.Join(t.TempDir(), "loose.pem")
	if err := soft.Generate(loose); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ uri, want string }{
		{"vault:foo", `signer: unknown key URI scheme (want pkcs11:, awskms:, gcpkms: or soft:): "vault"`},
		{"soft:relative.pem", `signer/soft: want soft:/absolute/path/key.pem, got "soft:relative.pem"`},
		{"soft:" + loose, "signer/soft: key file " + loose + " has mode 0644; it must be 0600 or stricter"},
		{"pkcs11:token=t;object=k?module-path=/x.so&pin-value=1234", "signer/pkcs11: pin-value is not accepted: never put a PIN in a URI; use pin-source=file:/path or pin-source=env:VAR"},
		{"gcpkms:projects/p/keyRings/r", `signer/gcpkms: key name "projects/p/keyRings/r": want projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/N`},
		{"awskms:///alias/x?endpoint=http://kms.example.com", `signer/awskms: endpoint "http://kms.example.com": plain http is only allowed to a loopback address`},
	} {
		_, err := signer.Open(context.Background(), tc.uri, signer.Options{})
		if err == nil || err.Error() != tc.want {
			t.Errorf("Open(%q) error\n got: %v\nwant: %s", tc.uri, err, tc.want)
		}
	}
}

func TestSelfTestAndBench(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := signer.Open(context.Background(), "soft:"+softKey(t, false), signer.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.Public().(*ecdsa.PublicKey); !ok {
		t.Fatalf("Public() = %T", s.Public())
	}
	lat, err := signer.SelfTest(context.Background(), s)
	if err != nil || lat <= 0 {
		t.Fatalf("SelfTest = %v, %v", lat, err)
	}
	r, err := signer.Bench(context.Background(), s, 4, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.Signs == 0 || r.PerSec <= 0 || r.P50 <= 0 || r.P99 < r.P50 {
		t.Fatalf("Bench = %+v", r)
	}
	if n := metricValue(t, reg, "tier0_signer_sign_seconds", "backend", "soft"); n < 2 {
		t.Fatalf("tier0_signer_sign_seconds count = %v, want >= 2", n)
	}
	// A second signer on the same registry reuses the collectors.
	s2, err := signer.Open(context.Background(), "soft:"+softKey(t, false), signer.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	_, err = s2.Sign(rand.Reader, make([]byte, 32), nil)
	if !errors.Is(err, signer.ErrClosed) {
		t.Fatalf("Sign after Close = %v", err)
	}
	if got := metricValue(t, reg, "tier0_signer_errors_total", "kind", "closed"); got != 1 {
		t.Fatalf(`tier0_signer_errors_total{kind="closed"} = %v, want 1`, got)
	}
}

// metricValue returns the value (counters, gauges) or sample count
// (histograms) of the series of name with label=value, or -1.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					switch {
					case m.Counter != nil:
						return m.GetCounter().GetValue()
					case m.Gauge != nil:
						return m.GetGauge().GetValue()
					case m.Histogram != nil:
						return float64(m.GetHistogram().GetSampleCount())
					}
				}
			}
		}
	}
	return -1
}

// BenchmarkSign compares a soft P-256 key with a SoftHSM2 P-256 key behind
// a pool of 4 PKCS#11 sessions.
func BenchmarkSign(b *testing.B) {
	digest := make([]byte, 32)
	run := func(b *testing.B, uri string, opts signer.Options) {
		s, err := signer.Open(context.Background(), uri, opts)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Sign(rand.Reader, digest, crypto.SHA256); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.Run("soft-P256", func(b *testing.B) { run(b, "soft:"+softKey(b, false), signer.Options{}) })
	b.Run("pkcs11-softhsm-P256-4sessions", func(b *testing.B) {
		tk := softhsmtest.Get(b)
		run(b, tk.URI("object=ec-key"), signer.Options{Sessions: 4})
	})
}
