package cliout

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// TestBundle: PEM is the roots' DER as is; JSON is a SPIFFE bundle that
// parses back to the same roots, JWT key and sequence; bad input is an
// error naming what is wrong.
func TestBundle(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"}, NotBefore: time.Unix(0, 0),
		NotAfter: time.Unix(1<<32, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	b := &tier0v1.GetBundleResponse{TrustDomain: "example.org", Sequence: 7, X509Authorities: [][]byte{der},
		JwtAuthorities: []*tier0v1.JWTAuthority{{KeyId: "k1", PublicKey: pub}}}

	var out bytes.Buffer
	if err := Bundle(&out, b, "pem"); err != nil {
		t.Fatal(err)
	}
	golden(t, "pem", out.String(), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))

	out.Reset()
	if err := Bundle(&out, b, JSON); err != nil {
		t.Fatal(err)
	}
	sb, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("example.org"), out.Bytes())
	if err != nil {
		t.Fatalf("json: %v\n%s", err, out.String())
	}
	if seq, _ := sb.SequenceNumber(); seq != 7 || len(sb.X509Authorities()) != 1 || !sb.X509Authorities()[0].Equal(mustParse(t, der)) || !sb.HasJWTAuthority("k1") {
		t.Errorf("json bundle: %s", out.String())
	}

	for name, bad := range map[string]*tier0v1.GetBundleResponse{
		"bundle: ":          {TrustDomain: "Not A TD"},
		"bundle: root: ":    {TrustDomain: "example.org", X509Authorities: [][]byte{{1, 2}}},
		"bundle: JWT key k": {TrustDomain: "example.org", JwtAuthorities: []*tier0v1.JWTAuthority{{KeyId: "k", PublicKey: []byte{1}}}},
	} {
		if err := Bundle(&out, bad, JSON); err == nil || !strings.HasPrefix(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
