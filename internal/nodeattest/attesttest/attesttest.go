// Package attesttest makes node attestation evidence signed by test keys,
// and the trust anchors (CA bundle, JWKS, region certificate) that verify
// it, for tests of internal/nodeattest and the end-to-end tests.
package attesttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/smallstep/pkcs7"
)

// CA is a test certificate authority (x509pop's host PKI, AWS's region
// certificate).
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

var serial int64 = 1000

func nextSerial() *big.Int { serial++; return big.NewInt(serial) }

// NewCA makes a self-signed CA valid from an hour ago for a day.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &CA{Cert: c, Key: key}
}

// PEM is the CA certificate in PEM.
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Host issues a host certificate for cn (and dns names) valid from
// notBefore to notAfter, with a new P-256 key.
func (ca *CA) Host(t testing.TB, cn string, dns []string, notBefore, notAfter time.Time) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

// KeyPEM is key in PKCS#8 PEM.
func KeyPEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// CertPEM is c in PEM.
func CertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// Issuer is a JWT issuer with one RSA key (a Kubernetes apiserver, Google).
type Issuer struct {
	URL string
	Key *rsa.PrivateKey
	KID string
}

// NewIssuer makes an issuer with a new 2048-bit key.
func NewIssuer(t testing.TB, url, kid string) *Issuer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &Issuer{URL: url, Key: k, KID: kid}
}

// JWKS is the issuer's public key set.
func (i *Issuer) JWKS(t testing.TB) []byte {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &i.Key.PublicKey, KeyID: i.KID, Algorithm: string(jose.RS256), Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Sign makes a JWT with the registered claims and extra.
func (i *Issuer) Sign(t testing.TB, aud string, iat, exp time.Time, extra any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: i.Key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", i.KID))
	if err != nil {
		t.Fatal(err)
	}
	c := jwt.Claims{Issuer: i.URL, Audience: jwt.Audience{aud}, IssuedAt: jwt.NewNumericDate(iat), NotBefore: jwt.NewNumericDate(iat), Expiry: jwt.NewNumericDate(exp)}
	tok, err := jwt.Signed(s).Claims(c).Claims(extra).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// PSATClaims are the kubernetes.io claims of a projected token.
func PSATClaims(ns, sa, podName, podUID, nodeName, nodeUID string) map[string]any {
	return map[string]any{"sub": "system:serviceaccount:" + ns + ":" + sa, "kubernetes.io": map[string]any{
		"namespace":      ns,
		"serviceaccount": map[string]any{"name": sa, "uid": "sa-uid-" + sa},
		"pod":            map[string]any{"name": podName, "uid": podUID},
		"node":           map[string]any{"name": nodeName, "uid": nodeUID},
	}}
}

// GCEClaims are the google.compute_engine claims of an instance identity token.
func GCEClaims(project, zone, instanceID, instanceName string) map[string]any {
	return map[string]any{"google": map[string]any{"compute_engine": map[string]any{
		"project_id": project, "project_number": 1234, "zone": zone, "instance_id": instanceID, "instance_name": instanceName,
	}}}
}

// AWSDocument is an EC2 instance identity document.
func AWSDocument(account, region, instanceID string) []byte {
	b, _ := json.MarshalIndent(map[string]any{
		"accountId": account, "region": region, "instanceId": instanceID, "availabilityZone": region + "a",
		"imageId": "ami-0123456789abcdef0", "instanceType": "t3.micro", "pendingTime": "2026-01-01T00:00:00Z",
		"privateIp": "10.0.0.1", "architecture": "x86_64",
	}, "", "  ")
	return b
}

// SignAWS returns the base64 PKCS#7 signature of doc by ca's key (the
// document embedded, as IMDS's rsa2048 signature has it).
func SignAWS(t testing.TB, ca *CA, doc []byte) string {
	t.Helper()
	sd, err := pkcs7.NewSignedData(doc)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(ca.Cert, ca.Key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}
