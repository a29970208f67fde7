package signer_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"

	"github.com/tier0-ca/tier0/signer"
	"github.com/tier0-ca/tier0/signer/internal/softhsmtest"
	"github.com/tier0-ca/tier0/signer/kmsfake/awsfake"
	"github.com/tier0-ca/tier0/signer/kmsfake/gcpfake"
	"github.com/tier0-ca/tier0/signer/soft"
)

func TestHashFor(t *testing.T) {
	key := func(c elliptic.Curve) crypto.PublicKey {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k.Public()
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pub  crypto.PublicKey
		want crypto.Hash
	}{
		{"P-256", key(elliptic.P256()), crypto.SHA256},
		{"P-384", key(elliptic.P384()), crypto.SHA384},
		{"P-521", key(elliptic.P521()), crypto.SHA512},
		{"RSA", rk.Public(), crypto.SHA256},
	} {
		if got := signer.HashFor(tc.pub); got != tc.want {
			t.Errorf("HashFor(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// awsEnv points the AWS SDK's credential chain at static test credentials.
func awsEnv(tb testing.TB) {
	for k, v := range awsfake.ClientEnv() {
		tb.Setenv(k, v)
	}
}

func awsKey(t *testing.T, fake *awsfake.Server, addr, spec string) string {
	t.Helper()
	arn, err := fake.CreateKey(spec)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("awskms:///%s?region=us-east-1&endpoint=http://%s", arn, addr)
}

func gcpKey(t *testing.T, fake *gcpfake.Server, addr, id string, alg kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm) string {
	t.Helper()
	name, err := fake.CreateKey("projects/p/locations/global/keyRings/r/cryptoKeys/"+id, alg)
	if err != nil {
		t.Fatal(err)
	}
	return "gcpkms:" + name + "?endpoint=" + addr + "&insecure=1"
}

// TestSelfTestBenchProbeKeyTypes: SelfTest, Bench and Probe sign with the
// digest each key needs (SHA-384 for P-384) on every backend; before, a
// P-384 KMS key failed them with "cannot sign a SHA-256 digest".
func TestSelfTestBenchProbeKeyTypes(t *testing.T) {
	awsEnv(t)
	aws, gcp := awsfake.New(), gcpfake.New()
	awsAddr, err := aws.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(aws.Stop)
	gcpAddr, err := gcp.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gcp.Stop)
	tk := softhsmtest.Get(t)
	p384 := filepath.Join(t.TempDir(), "p384.pem")
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := soft.WriteKey(p384, k); err != nil {
		t.Fatal(err)
	}
	for name, uri := range map[string]string{
		"soft/P-384":   "soft:" + p384,
		"soft/RSA":     "soft:" + softKey(t, true),
		"pkcs11/P-384": tk.URI("object=" + softhsmtest.P384),
		"pkcs11/RSA":   tk.URI("object=" + softhsmtest.RSALabel),
		"awskms/P-384": awsKey(t, aws, awsAddr, "ECC_NIST_P384"),
		"awskms/RSA":   awsKey(t, aws, awsAddr, "RSA_2048"),
		"gcpkms/P-384": gcpKey(t, gcp, gcpAddr, "p384", kmspb.CryptoKeyVersion_EC_SIGN_P384_SHA384),
		"gcpkms/RSA":   gcpKey(t, gcp, gcpAddr, "rsa", kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_2048_SHA256),
		"gcpkms/P-256": gcpKey(t, gcp, gcpAddr, "p256", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256),
		"pkcs11/P-256": tk.URI("object=" + softhsmtest.ECLabel),
		"awskms/P-256": awsKey(t, aws, awsAddr, "ECC_NIST_P256"),
		"soft/P-256":   "soft:" + softKey(t, false),
	} {
		t.Run(name, func(t *testing.T) {
			s, err := signer.Open(context.Background(), uri, signer.Options{RateLimit: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := signer.SelfTest(context.Background(), s); err != nil {
				t.Fatalf("SelfTest: %v", err)
			}
			if err := signer.Probe(context.Background(), s); err != nil {
				t.Fatalf("Probe: %v", err)
			}
			r, err := signer.Bench(context.Background(), s, 2, 50*time.Millisecond)
			if err != nil || r.Signs == 0 {
				t.Fatalf("Bench = %+v, %v", r, err)
			}
			if h := s.Health(); h.State != signer.Up {
				t.Fatalf("Health = %+v", h)
			}
		})
	}
}
