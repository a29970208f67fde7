package signer_test

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"

	"github.com/tier0-ca/tier0/signer"
	"github.com/tier0-ca/tier0/signer/kmsfake/awsfake"
	"github.com/tier0-ca/tier0/signer/kmsfake/gcpfake"
)

// endpoint is a KMS fake that can disappear (listener and connections
// closed) and come back on the same address with the same keys.
type endpoint struct {
	addr  string
	start func(addr string) (string, error)
	stop  func()
}

func (e *endpoint) restart(tb testing.TB) {
	tb.Helper()
	if _, err := e.start(e.addr); err != nil {
		tb.Fatal(err)
	}
}

// kmsEndpoints returns, per backend, a started endpoint and a P-256 key URI
// on it.
func kmsEndpoints() map[string]func(testing.TB) (*endpoint, string) {
	started := func(tb testing.TB, start func(string) (string, error), stop func()) *endpoint {
		tb.Helper()
		addr, err := start("127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(stop)
		return &endpoint{addr: addr, start: start, stop: stop}
	}
	return map[string]func(testing.TB) (*endpoint, string){
		"awskms": func(tb testing.TB) (*endpoint, string) {
			fake := awsfake.New()
			e := started(tb, fake.Start, fake.Stop)
			arn, err := fake.CreateKey("ECC_NIST_P256")
			if err != nil {
				tb.Fatal(err)
			}
			return e, "awskms:///" + arn + "?region=us-east-1&endpoint=http://" + e.addr
		},
		"gcpkms": func(tb testing.TB) (*endpoint, string) {
			fake := gcpfake.New()
			e := started(tb, fake.Start, fake.Stop)
			name, err := fake.CreateKey("projects/p/locations/global/keyRings/r/cryptoKeys/ca", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256)
			if err != nil {
				tb.Fatal(err)
			}
			return e, "gcpkms:" + name + "?endpoint=" + e.addr + "&insecure=1"
		},
	}
}

// TestKMSEndpointGoneAndBack: the KMS endpoint disappears (connections
// refused) and comes back on the same port. Signs fail with an
// *UnavailableError whose public message names no key, the breaker opens
// and the key is Down; after the endpoint returns the signer is Up again
// by itself (no signs needed) and signs.
func TestKMSEndpointGoneAndBack(t *testing.T) {
	awsEnv(t)
	for name, start := range kmsEndpoints() {
		t.Run(name, func(t *testing.T) {
			e, uri := start(t)
			s, err := signer.Open(context.Background(), uri, signer.Options{RateLimit: -1, Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := signer.Probe(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			e.stop()
			var ue *signer.UnavailableError
			deadline := time.Now().Add(20 * time.Second)
			for s.Health().State != signer.Down {
				err := signer.Probe(context.Background(), s)
				if !errors.As(err, &ue) {
					t.Fatalf("sign with the endpoint gone = %v, want *UnavailableError", err)
				}
				if time.Now().After(deadline) {
					t.Fatalf("breaker did not open: %+v", s.Health())
				}
			}
			err = signer.Probe(context.Background(), s)
			if !errors.As(err, &ue) || ue.Reason != "circuit_open" || ue.RetryAfter <= 0 || ue.RetryAfter > 2*time.Second {
				t.Fatalf("sign with the breaker open = %v", err)
			}
			e.restart(t)
			deadline = time.Now().Add(20 * time.Second)
			for s.Health().State != signer.Up {
				if time.Now().After(deadline) {
					t.Fatalf("did not recover by itself after the endpoint returned: %+v", s.Health())
				}
				time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
			}
			if err := signer.Probe(context.Background(), s); err != nil {
				t.Fatalf("sign after recovery: %v", err)
			}
		})
	}
}

// BenchmarkKMSEndpointRecovery measures, per backend, the gap in signing
// when the KMS endpoint disappears for TIER0_OUTAGE (default 10s) and comes
// back on the same port: signs are attempted every 10ms from one goroutine
// with the default Options, as a node in direct mode does under load.
// Reported: gap-ms (first failed to first successful sign after the
// outage began) and after-return-ms (endpoint back to first success).
//
//	go test -run '^$' -bench KMSEndpointRecovery -benchtime 3x ./signer/
func BenchmarkKMSEndpointRecovery(b *testing.B) {
	outage := 10 * time.Second
	if d, err := time.ParseDuration(os.Getenv("TIER0_OUTAGE")); err == nil {
		outage = d
	}
	awsEnv(b)
	for _, name := range []string{"awskms", "gcpkms"} {
		b.Run(name, func(b *testing.B) {
			e, uri := kmsEndpoints()[name](b)
			s, err := signer.Open(context.Background(), uri, signer.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			digest := make([]byte, 32)
			var gap, after time.Duration
			for range b.N {
				e.stop()
				down := time.Now()
				var failedAt, backAt time.Time
				for {
					_, err := s.Sign(rand.Reader, digest, signer.HashFor(s.Public()))
					now := time.Now()
					if err != nil && failedAt.IsZero() {
						failedAt = now
					}
					if err == nil && !failedAt.IsZero() {
						gap += now.Sub(failedAt)
						after += now.Sub(backAt)
						break
					}
					if backAt.IsZero() && now.Sub(down) >= outage {
						e.restart(b)
						backAt = time.Now()
					}
					time.Sleep(10 * time.Millisecond) // the load's pace
				}
			}
			b.ReportMetric(float64(gap.Milliseconds())/float64(b.N), "gap-ms")
			b.ReportMetric(float64(after.Milliseconds())/float64(b.N), "after-return-ms")
		})
	}
}
