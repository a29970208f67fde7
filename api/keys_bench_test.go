package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	kmspb "cloud.google.com/go/kms/apiv1/kmspb"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/internal/hsmtest"
	"github.com/tier0-ca/tier0/internal/roles"
	"github.com/tier0-ca/tier0/signer"
	"github.com/tier0-ca/tier0/signer/kmsfake/awsfake"
	"github.com/tier0-ca/tier0/signer/kmsfake/gcpfake"
	"github.com/tier0-ca/tier0/signer/soft"
)

// BenchmarkMintKeyCustody measures SVIDs/s through the API (as
// BenchmarkMintThroughAPI, batch 1) with the CA key behind each signer
// backend, in the same run: soft vs SoftHSM2 in direct mode (the HSM must
// not be the bottleneck: target >= 90% of soft), and the AWS/GCP KMS fakes
// (local, in-process endpoints: real client libraries and wire protocols,
// no network latency or quota; client-side rate limit off) in direct and
// delegated mode.
func BenchmarkMintKeyCustody(b *testing.B) {
	cases := []struct {
		name      string
		uri       func(b *testing.B) string
		delegated bool
	}{
		{"soft/direct", softURI, false},
		{"pkcs11/direct", func(b *testing.B) string { return hsmtest.ECKeyURI(b) }, false},
		{"awskms/direct", awsURI, false},
		{"awskms/delegated", awsURI, true},
		{"gcpkms/direct", gcpURI, false},
		{"gcpkms/delegated", gcpURI, true},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			f := newFixture(b)
			f.grant(b, "a1", "spiffe://example.org/web")
			agentID, _ := roles.AgentID(testTD, "a1")
			c := f.clientAs(b, agentID) // before the swap: its SVID chains to the fixture's bundle
			s, err := signer.Open(context.Background(), tc.uri(b), signer.Options{RateLimit: -1})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			now := time.Now()
			root, err := ca.NewRoot(testTD, s, 24*time.Hour, now)
			if err != nil {
				b.Fatal(err)
			}
			iss := ca.Issuer{Signer: s, Cert: root}
			if tc.delegated {
				key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				if err != nil {
					b.Fatal(err)
				}
				inter, err := ca.NewIntermediate(testTD, iss, key.Public(), 6*time.Hour, now)
				if err != nil {
					b.Fatal(err)
				}
				iss = ca.Issuer{Signer: key, Cert: inter, Chain: []*x509.Certificate{inter}}
			}
			if err := f.ca.SetIssuer(iss); err != nil {
				b.Fatal(err)
			}
			benchMint(b, c, 1)
		})
	}
}

func softURI(b *testing.B) string {
	path := filepath.Join(b.TempDir(), "ca.key")
	if err := soft.Generate(path); err != nil {
		b.Fatal(err)
	}
	return "soft:" + path
}

func benchListener(b *testing.B) net.Listener {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { lis.Close() })
	return lis
}

func awsURI(b *testing.B) string {
	b.Setenv("AWS_ACCESS_KEY_ID", "AKIDTIER0TEST")
	b.Setenv("AWS_SECRET_ACCESS_KEY", "tier0-test-secret")
	b.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	b.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	b.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	fake := awsfake.New()
	lis := benchListener(b)
	go func() { _ = fake.Serve(lis) }()
	arn, err := fake.CreateKey("ECC_NIST_P256")
	if err != nil {
		b.Fatal(err)
	}
	return fmt.Sprintf("awskms:///%s?region=us-east-1&endpoint=http://%s", arn, lis.Addr())
}

func gcpURI(b *testing.B) string {
	fake := gcpfake.New()
	lis := benchListener(b)
	go func() { _ = fake.Serve(lis) }()
	b.Cleanup(fake.Stop)
	name, err := fake.CreateKey("projects/p/locations/global/keyRings/r/cryptoKeys/ca", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256)
	if err != nil {
		b.Fatal(err)
	}
	return fmt.Sprintf("gcpkms:%s?endpoint=%s&insecure=1", name, lis.Addr())
}
