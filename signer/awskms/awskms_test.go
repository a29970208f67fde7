package awskms_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tier0-ca/tier0/signer"
	"github.com/tier0-ca/tier0/signer/awskms"
	"github.com/tier0-ca/tier0/signer/internal/health"
	"github.com/tier0-ca/tier0/signer/internal/kmsctl"
	"github.com/tier0-ca/tier0/signer/kmsfake/awsfake"
	"github.com/tier0-ca/tier0/signer/signertest"
)

// startFake serves a fake KMS on loopback and points the SDK's credential
// chain at static test credentials.
func startFake(t *testing.T) (*awsfake.Server, string) {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTIER0TEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "tier0-test-secret")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fake := awsfake.New()
	go fake.Serve(lis)
	t.Cleanup(func() { lis.Close() })
	return fake, "http://" + lis.Addr().String()
}

func uri(t *testing.T, fake *awsfake.Server, endpoint, spec string) string {
	t.Helper()
	arn, err := fake.CreateKey(spec)
	if err != nil {
		t.Fatal(err)
	}
	return "awskms:///" + arn + "?endpoint=" + endpoint
}

func TestConformance(t *testing.T) {
	fake, ep := startFake(t)
	for _, spec := range []string{"ECC_NIST_P256", "RSA_2048"} {
		u := uri(t, fake, ep, spec)
		t.Run(spec, func(t *testing.T) {
			signertest.Run(t, func(t *testing.T) signer.Signer {
				s, err := signer.Open(context.Background(), u, signer.Options{})
				if err != nil {
					t.Fatal(err)
				}
				return s
			})
		})
	}
}

func TestAlias(t *testing.T) {
	fake, ep := startFake(t)
	arn, _ := fake.CreateKey("ECC_NIST_P256")
	if err := fake.CreateAlias("alias/tier0-ca", arn); err != nil {
		t.Fatal(err)
	}
	s, err := signer.Open(context.Background(), "awskms:///alias/tier0-ca?region=us-east-1&endpoint="+ep, signer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.KeyID() != arn {
		t.Errorf("KeyID() = %q, want the key ARN %q", s.KeyID(), arn)
	}
	if _, err := signer.SelfTest(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	_, err = signer.Open(context.Background(), "awskms:///alias/missing?region=us-east-1&endpoint="+ep, signer.Options{})
	if err == nil || !strings.Contains(err.Error(), "NotFoundException: Key 'alias/missing' does not exist") {
		t.Errorf("Open(missing alias) = %v", err)
	}
}

func open(t *testing.T, u string, ctl kmsctl.Config) *awskms.Signer {
	t.Helper()
	s, err := awskms.Open(context.Background(), u, awskms.Config{Control: ctl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func digest(i int) []byte {
	d := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
	return d[:]
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += metricValue(m)
			}
		}
	}
	return sum
}

func metricValue(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

func TestThrottlingStorm(t *testing.T) {
	fake, ep := startFake(t)
	u := uri(t, fake, ep, "ECC_NIST_P256")
	reg := prometheus.NewRegistry()
	s := open(t, u, kmsctl.Config{Rate: -1, Metrics: health.NewMetrics(reg)})
	fake.Throttle(0.8)
	var (
		wg                   sync.WaitGroup
		mu                   sync.Mutex
		succeeded, throttled int
	)
	for w := range 32 {
		wg.Go(func() {
			for i := range 4 {
				d := digest(w*4 + i)
				sig, err := s.Sign(rand.Reader, d, crypto.SHA256)
				mu.Lock()
				switch {
				case err == nil:
					if verr := signer.Verify(s.Public(), d, sig, crypto.SHA256); verr != nil {
						t.Error(verr)
					}
					succeeded++
				case errors.Is(err, signer.ErrThrottled) && strings.Contains(err.Error(), "after 5 attempts: "):
					throttled++
				default:
					t.Errorf("Sign under throttling: %v", err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	retries := counter(t, reg, "tier0_signer_retries_total")
	t.Logf("succeeded %d, throttled %d, retries %v", succeeded, throttled, retries)
	if succeeded == 0 || retries == 0 {
		t.Fatalf("succeeded %d, retries %v: want both > 0", succeeded, retries)
	}
	if got := counter(t, reg, "tier0_signer_circuit_open"); got != 0 {
		t.Errorf("throttling opened the circuit (gauge %v)", got)
	}
	fake.Throttle(0)
	if _, err := s.Sign(rand.Reader, digest(0), crypto.SHA256); err != nil {
		t.Fatal(err)
	}
}

func TestKMSDownCircuitBreaker(t *testing.T) {
	fake, ep := startFake(t)
	u := uri(t, fake, ep, "ECC_NIST_P256")
	reg := prometheus.NewRegistry()
	s := open(t, u, kmsctl.Config{Rate: -1, MaxRetries: 2, BackoffBase: time.Millisecond, ProbeMin: 10 * time.Millisecond, ProbeMax: 50 * time.Millisecond, Metrics: health.NewMetrics(reg)})
	fake.Unavailable(true)
	// The first calls retry and fail with the KMS error; after 5
	// consecutive failures the circuit opens.
	_, err := s.Sign(rand.Reader, digest(1), crypto.SHA256)
	if !errors.Is(err, signer.ErrKMS) || !errors.Is(err, signer.ErrUnavailable) || !strings.Contains(err.Error(), "KMSInternalException") {
		t.Fatalf("Sign with KMS down = %v, want an unavailable ErrKMS with KMSInternalException", err)
	}
	var ue *signer.UnavailableError
	deadline := time.Now().Add(5 * time.Second)
	for !errors.As(err, &ue) || ue.Reason != "circuit_open" {
		if time.Now().After(deadline) {
			t.Fatalf("circuit did not open: %v", err)
		}
		_, err = s.Sign(rand.Reader, digest(1), crypto.SHA256)
	}
	// The full error (for the server log) names the key; the public one
	// (for clients) names neither the ARN nor the account.
	if !strings.HasPrefix(err.Error(), "signer/awskms: sign with arn:aws:kms:us-east-1:111122223333:key/") || !strings.Contains(err.Error(), "KMSInternalException") {
		t.Errorf("circuit-open error = %v", err)
	}
	if pub := ue.Public(); strings.Contains(pub, "111122223333") || strings.Contains(pub, "arn:") || !strings.HasPrefix(pub, "signer: CA key unavailable (awskms: circuit_open); retry in ") {
		t.Errorf("public message = %q", pub)
	}
	if ue.RetryAfter <= 0 || ue.RetryAfter > 50*time.Millisecond {
		t.Errorf("RetryAfter = %v, want the time to the next probe (<= 50ms)", ue.RetryAfter)
	}
	if got := counter(t, reg, "tier0_signer_circuit_open"); got != 1 {
		t.Errorf("tier0_signer_circuit_open = %v, want 1", got)
	}
	start := time.Now()
	for range 100 {
		if _, err := s.Sign(rand.Reader, digest(2), crypto.SHA256); !errors.Is(err, signer.ErrUnavailable) {
			t.Fatalf("Sign with circuit open = %v", err)
		}
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("100 signs with the circuit open took %v; want fail-fast", el)
	}
	fake.Unavailable(false)
	// The prober closes the circuit without any traffic.
	deadline = time.Now().Add(10 * time.Second)
	for s.Health().State != signer.Up {
		if time.Now().After(deadline) {
			t.Fatalf("signer did not recover after the KMS came back: %+v", s.Health())
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
	if _, err := s.Sign(rand.Reader, digest(3), crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	if got := counter(t, reg, "tier0_signer_circuit_open"); got != 0 {
		t.Errorf("tier0_signer_circuit_open = %v after recovery, want 0", got)
	}
}

func TestEndpointUnreachable(t *testing.T) {
	fake, ep := startFake(t)
	u := uri(t, fake, ep, "ECC_NIST_P256")
	s := open(t, u, kmsctl.Config{Rate: -1, MaxRetries: 1, BackoffBase: time.Millisecond})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + lis.Addr().String()
	lis.Close()
	_, err = awskms.Open(context.Background(), strings.Replace(u, ep, dead, 1), awskms.Config{Control: kmsctl.Config{Rate: -1, MaxRetries: 1, BackoffBase: time.Millisecond}})
	if !errors.Is(err, signer.ErrKMS) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Open(dead endpoint) = %v, want ErrKMS ... connection refused", err)
	}
	if _, err := s.Sign(rand.Reader, digest(1), crypto.SHA256); err != nil {
		t.Fatal(err)
	}
}

func TestTimeout(t *testing.T) {
	fake, ep := startFake(t)
	u := uri(t, fake, ep, "ECC_NIST_P256")
	s := open(t, u, kmsctl.Config{Rate: -1, Timeout: 100 * time.Millisecond})
	fake.Delay(3 * time.Second)
	start := time.Now()
	_, err := s.Sign(rand.Reader, digest(1), crypto.SHA256)
	if !errors.Is(err, signer.ErrTimeout) {
		t.Fatalf("Sign with a slow KMS = %v, want ErrTimeout", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("timeout took %v", el)
	}
}

func TestCorruptSignature(t *testing.T) {
	fake, ep := startFake(t)
	u := uri(t, fake, ep, "ECC_NIST_P256")
	s := open(t, u, kmsctl.Config{})
	fake.CorruptSignature(true)
	d := digest(1)
	sig, err := s.Sign(rand.Reader, d, crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign: %v (the signer cannot tell; it returns the bad signature)", err)
	}
	if err := signer.Verify(s.Public(), d, sig, crypto.SHA256); err == nil {
		t.Fatal("corrupted signature verifies")
	}
	// x509.CreateCertificate checks the signature it got back: the CA sees
	// a clear error instead of issuing a broken certificate.
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	_, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, s.Public(), s)
	if err == nil || !strings.Contains(err.Error(), "x509: signature returned by signer is invalid") {
		t.Fatalf("CreateCertificate with a corrupting KMS = %v", err)
	}
}

func TestAlgorithmErrors(t *testing.T) {
	fake, ep := startFake(t)
	s := open(t, uri(t, fake, ep, "ECC_NIST_P256"), kmsctl.Config{})
	d := sha512.Sum384([]byte("x"))
	_, err := s.Sign(rand.Reader, d[:], crypto.SHA384)
	if err == nil || err.Error() != "signer/awskms: key spec ECC_NIST_P256 cannot sign a SHA-384 digest" {
		t.Errorf("P-256 with SHA-384: %v", err)
	}
}

func TestParseURI(t *testing.T) {
	for _, tc := range []struct{ uri, key, region, err string }{
		{uri: "awskms:///arn:aws:kms:eu-west-1:111122223333:key/abc", key: "arn:aws:kms:eu-west-1:111122223333:key/abc", region: "eu-west-1"},
		{uri: "awskms:alias/ca?region=us-east-2", key: "alias/ca", region: "us-east-2"},
		{uri: "awskms:///", err: "signer/awskms: URI names no key (want awskms:///arn:aws:kms:REGION:ACCOUNT:key/ID or awskms:///alias/NAME)"},
		{uri: "awskms:///alias/x?regoin=x", err: `signer/awskms: unknown URI query parameter "regoin"`},
		{uri: "awskms:///alias/x?endpoint=ftp://h", err: `signer/awskms: endpoint "ftp://h": want https://host[:port]`},
		{uri: "awskms:///alias/x?endpoint=https://admin:hunter2@kms.example.com", err: `signer/awskms: endpoint must not carry credentials (user:password@); AWS credentials come from the standard chain (env, shared config, IMDS)`},
		{uri: "awskms:///alias/x?endpoint=ftp://admin:hunter2@kms.example.com", err: `signer/awskms: endpoint must not carry credentials (user:password@); AWS credentials come from the standard chain (env, shared config, IMDS)`},
		{uri: "awskms:///alias/x?endpoint=" + url.QueryEscape("https://admin:hun ter2@kms.example.com"), err: `signer/awskms: endpoint must not carry credentials (user:password@); AWS credentials come from the standard chain (env, shared config, IMDS)`},
	} {
		u, err := awskms.ParseURI(tc.uri)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("ParseURI(%q) = %v, want %s", tc.uri, err, tc.err)
			}
			continue
		}
		if err != nil || u.KeyID != tc.key || u.Region != tc.region {
			t.Errorf("ParseURI(%q) = %+v, %v", tc.uri, u, err)
		}
	}
}
