package gcpkms_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tier0-ca/tier0/signer"
	"github.com/tier0-ca/tier0/signer/gcpkms"
	"github.com/tier0-ca/tier0/signer/internal/health"
	"github.com/tier0-ca/tier0/signer/internal/kmsctl"
	"github.com/tier0-ca/tier0/signer/kmsfake/gcpfake"
	"github.com/tier0-ca/tier0/signer/signertest"
)

const keyName = "projects/tier0/locations/global/keyRings/ca/cryptoKeys/"

func startFake(t *testing.T) (*gcpfake.Server, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fake := gcpfake.New()
	go fake.Serve(lis)
	t.Cleanup(fake.Stop)
	return fake, lis.Addr().String()
}

func newKey(t *testing.T, fake *gcpfake.Server, ep, id string, alg kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm) string {
	t.Helper()
	name, err := fake.CreateKey(keyName+id, alg)
	if err != nil {
		t.Fatal(err)
	}
	return "gcpkms:" + name + "?endpoint=" + ep + "&insecure=1"
}

func TestConformance(t *testing.T) {
	fake, ep := startFake(t)
	u := newKey(t, fake, ep, "p256", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256)
	signertest.Run(t, func(t *testing.T) signer.Signer {
		s, err := signer.Open(context.Background(), u, signer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func open(t *testing.T, u string, ctl kmsctl.Config) *gcpkms.Signer {
	t.Helper()
	s, err := gcpkms.Open(context.Background(), u, gcpkms.Config{Control: ctl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func retries(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "tier0_signer_retries_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

func TestWrongChecksum(t *testing.T) {
	fake, ep := startFake(t)
	u := newKey(t, fake, ep, "p256", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256)
	reg := prometheus.NewRegistry()
	s := open(t, u, kmsctl.Config{Rate: -1, BackoffBase: time.Millisecond, Metrics: health.NewMetrics(reg)})
	fake.WrongChecksum(true)
	d := sha256.Sum256([]byte("x"))
	_, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
	if !errors.Is(err, signer.ErrChecksum) {
		t.Fatalf("Sign with a bad signature_crc32c = %v, want ErrChecksum", err)
	}
	const want = "signer/gcpkms: sign with " + keyName + "p256/cryptoKeyVersions/1: signer: CA key unavailable (gcpkms: unavailable; retry in 250ms): signer: kms error after 5 attempts: signer: kms response checksum mismatch: signature_crc32c does not match the signature (response corrupted in transit)"
	if err.Error() != want {
		t.Errorf("error\n got: %v\nwant: %s", err, want)
	}
	if got := retries(t, reg); got != 4 {
		t.Errorf("retries = %v, want 4", got)
	}
	fake.WrongChecksum(false)
	sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := signer.Verify(s.Public(), d[:], sig, crypto.SHA256); err != nil {
		t.Fatal(err)
	}
}

func TestThrottleThenSucceed(t *testing.T) {
	fake, ep := startFake(t)
	u := newKey(t, fake, ep, "p256", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256)
	reg := prometheus.NewRegistry()
	s := open(t, u, kmsctl.Config{Rate: -1, BackoffBase: time.Millisecond, Metrics: health.NewMetrics(reg)})
	fake.ThrottleNext(3)
	d := sha256.Sum256([]byte("x"))
	if _, err := s.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
		t.Fatalf("Sign after 3 throttles: %v", err)
	}
	if got := retries(t, reg); got != 3 {
		t.Errorf("retries = %v, want 3", got)
	}
	fake.ThrottleNext(10)
	_, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
	if !errors.Is(err, signer.ErrThrottled) || !strings.Contains(err.Error(), "ResourceExhausted") {
		t.Fatalf("Sign throttled 10 times = %v, want ErrThrottled", err)
	}
}

// TestUnavailableCircuit: a KMS answering Unavailable opens the circuit
// within one call (5 attempts); later calls fail at once with a retry-after
// hint; the background probe closes it once the KMS answers, without any
// traffic.
func TestUnavailableCircuit(t *testing.T) {
	fake, ep := startFake(t)
	u := newKey(t, fake, ep, "p256", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256)
	s := open(t, u, kmsctl.Config{Rate: -1, BackoffBase: time.Millisecond, ProbeMin: 10 * time.Millisecond, ProbeMax: 50 * time.Millisecond})
	fake.Unavailable(true)
	d := sha256.Sum256([]byte("x"))
	_, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
	var ue *signer.UnavailableError
	if !errors.As(err, &ue) || ue.Reason != "unavailable" || !errors.Is(err, signer.ErrKMS) || !strings.Contains(err.Error(), "code = Unavailable") {
		t.Fatalf("Sign with KMS unavailable = %v, want an unavailable ErrKMS", err)
	}
	_, err = s.Sign(rand.Reader, d[:], crypto.SHA256)
	if !errors.As(err, &ue) || ue.Reason != "circuit_open" || ue.RetryAfter <= 0 || ue.RetryAfter > 50*time.Millisecond {
		t.Fatalf("second Sign with KMS unavailable = %v, want circuit_open with a retry-after hint", err)
	}
	if h := s.Health(); h.State != signer.Down || h.RetryAt.IsZero() {
		t.Fatalf("Health with the circuit open = %+v", h)
	}
	before := fake.Signs()
	fake.Unavailable(false)
	deadline := time.Now().Add(10 * time.Second)
	for s.Health().State != signer.Up {
		if time.Now().After(deadline) {
			t.Fatalf("the circuit did not close by itself: %+v", s.Health())
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	if got := fake.Signs() - before; got != 1 {
		t.Errorf("signs reaching the KMS while recovering = %d, want 1 (the probe)", got)
	}
	if _, err = s.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
		t.Fatalf("Sign after recovery: %v", err)
	}
}

func TestTimeoutAndCorrupt(t *testing.T) {
	fake, ep := startFake(t)
	u := newKey(t, fake, ep, "p256", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256)
	s := open(t, u, kmsctl.Config{Rate: -1, Timeout: 100 * time.Millisecond})
	d := sha256.Sum256([]byte("x"))
	fake.Delay(3 * time.Second)
	start := time.Now()
	if _, err := s.Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, signer.ErrTimeout) {
		t.Fatalf("Sign with a slow KMS = %v, want ErrTimeout", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("timeout took %v", el)
	}
	fake.Reset()
	fake.CorruptSignature(true)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	_, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, s.Public(), s)
	if err == nil || !strings.Contains(err.Error(), "x509: signature returned by signer is invalid") {
		t.Fatalf("CreateCertificate with a corrupting KMS = %v", err)
	}
}

func TestRSAPSSKey(t *testing.T) {
	fake, ep := startFake(t)
	s := open(t, newKey(t, fake, ep, "pss", kmspb.CryptoKeyVersion_RSA_SIGN_PSS_2048_SHA256), kmsctl.Config{})
	d := sha256.Sum256([]byte("x"))
	opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	sig, err := s.Sign(rand.Reader, d[:], opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := signer.Verify(s.Public(), d[:], sig, opts); err != nil {
		t.Fatal(err)
	}
	_, err = s.Sign(rand.Reader, d[:], crypto.SHA256)
	if err == nil || err.Error() != "signer/gcpkms: key algorithm RSA_SIGN_PSS_2048_SHA256 does not match the requested padding (PSS: false)" {
		t.Errorf("PKCS#1 v1.5 with a PSS key: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	fake, ep := startFake(t)
	_, err := gcpkms.Open(context.Background(), "gcpkms:"+keyName+"missing/cryptoKeyVersions/1?endpoint="+ep+"&insecure=1", gcpkms.Config{})
	if err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("Open(missing key) = %v", err)
	}
	_ = fake
	for _, tc := range []struct{ uri, err string }{
		{"gcpkms:" + keyName + "k/cryptoKeyVersions/1?endpoint=kms.example.com:443&insecure=1", `signer/gcpkms: insecure=1 needs a loopback endpoint=127.0.0.1:PORT, got "kms.example.com:443"`},
		{"gcpkms:" + keyName + "k?endpoint=" + ep, `signer/gcpkms: key name "` + keyName + `k": want projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/N`},
		{"gcpkms:" + keyName + "k/cryptoKeyVersions/1?foo=1", `signer/gcpkms: unknown URI query parameter "foo"`},
		{"gcpkms:" + keyName + "k/cryptoKeyVersions/1?endpoint=svc:s3cret@127.0.0.1:4600&insecure=1", `signer/gcpkms: endpoint must be host:port without credentials (user:password@); credentials come from Application Default Credentials`},
	} {
		if _, err := gcpkms.ParseURI(tc.uri); err == nil || err.Error() != tc.err {
			t.Errorf("ParseURI(%q) = %v, want %s", tc.uri, err, tc.err)
		}
	}
}
