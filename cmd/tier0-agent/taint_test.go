package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"testing"
	"time"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// selfSigned makes a CA certificate with key ID skid.
func selfSigned(t *testing.T, skid byte) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, SubjectKeyId: []byte{skid, skid},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTaints(t *testing.T) {
	a := &agent{}
	rootA, rootB := selfSigned(t, 0xa), selfSigned(t, 0xb)
	underA := []*x509.Certificate{{AuthorityKeyId: []byte{0xa, 0xa}}}
	underB := []*x509.Certificate{{}, {AuthorityKeyId: []byte{0xb, 0xb}}} // leaf + intermediate
	if a.taintedChain(underA) || a.taintedChain(nil) {
		t.Fatal("tainted before any taint")
	}
	resp := &tier0v1.GetBundleResponse{TaintedX509Authorities: [][]byte{rootA.Raw, []byte("junk")}, TaintedJwtKeyIds: []string{"k1"}}
	if !a.setTaints(resp) || a.setTaints(resp) {
		t.Fatal("setTaints: want changed once, then unchanged")
	}
	if !a.taintedChain(underA) || a.taintedChain(underB) {
		t.Fatal("only the chain under root A is tainted")
	}
	if !a.setTaints(&tier0v1.GetBundleResponse{TaintedX509Authorities: [][]byte{rootB.Raw}}) || !a.taintedChain(underB) || a.taintedChain(underA) {
		t.Fatal("after tainting B instead: B's chain (by its intermediate) is tainted, A's no more")
	}
	a.setTaints(resp)
	enc := base64.RawURLEncoding.EncodeToString
	for _, c := range []struct {
		token string
		want  bool
	}{
		{enc([]byte(`{"alg":"ES256","kid":"k1"}`)) + ".e30.sig", true},
		{enc([]byte(`{"alg":"ES256","kid":"k2"}`)) + ".e30.sig", false},
		{"not-a-jwt", false},
		{"%%%.e30.sig", false},
		{enc([]byte(`not json`)) + ".e30.sig", false},
	} {
		if got := a.taintedJWT(c.token); got != c.want {
			t.Errorf("taintedJWT(%q) = %v, want %v", c.token, got, c.want)
		}
	}
}
