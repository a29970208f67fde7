package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// The in-memory fast path must encode exactly the TBSCertificate that
// x509.CreateCertificate encodes for the same template: every serial
// length and sign, both ASN.1 time forms, short and long URIs, P-256 and
// RSA subject keys, with and without AKI.
func TestFastSignMatchesCreateCertificate(t *testing.T) {
	e := newEnv(t, nil)
	st := e.ca.issuer.Load()
	key, ok := fastKey(st.iss.Signer)
	if !ok {
		t.Fatal("test issuer is not an in-memory P-256 key")
	}
	subjects := []crypto.PublicKey{newP256(t).Public(), loadKey(t, "rsa2048.pem").Public()}
	serials := []*big.Int{big.NewInt(1), big.NewInt(127), big.NewInt(128), new(big.Int).Lsh(big.NewInt(1), 127), new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))}
	ids := []string{"spiffe://example.org/a", "spiffe://example.org/" + strings.Repeat("x", 300), "spiffe://example.org/" + strings.Repeat("y", 1900)}
	times := [][2]time.Time{
		{e.now.Add(-10 * time.Second), e.now.Add(time.Hour)},
		{time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC)},
		{time.Date(1949, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	n := 0
	for _, pub := range subjects {
		for _, serial := range serials {
			for _, id := range ids {
				for _, tv := range times {
					for _, aki := range [][]byte{st.iss.Cert.SubjectKeyId, nil} {
						u, _ := url.Parse(id)
						tmpl := &x509.Certificate{SerialNumber: serial, NotBefore: tv[0], NotAfter: tv[1],
							KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: svidEKUs, BasicConstraintsValid: true,
							URIs: []*url.URL{u}, AuthorityKeyId: aki}
						want, err := x509.CreateCertificate(rand.Reader, tmpl, st.iss.Cert, pub, key)
						if err != nil {
							t.Fatal(err)
						}
						wc, err := x509.ParseCertificate(want)
						if err != nil {
							t.Fatal(err)
						}
						got, err := svidTBS(tmpl, st.iss.Cert.RawSubject, pub)
						if err != nil {
							t.Fatal(err)
						}
						if aki == nil {
							// CreateCertificate takes the parent's SKI when the template has none.
							continue
						}
						if !bytes.Equal(got, wc.RawTBSCertificate) {
							t.Fatalf("serial %s id %d bytes times %v: TBS differs from CreateCertificate's\ngot  %x\nwant %x", serial, len(id), tv, got, wc.RawTBSCertificate)
						}
						n++
					}
				}
			}
		}
	}
	if n != len(subjects)*len(serials)*len(ids)*len(times) {
		t.Fatalf("compared %d encodings", n)
	}
}

// Every SVID of the fast path (more than one sampling period) carries a
// signature that verifies under the issuer and passes chain verification.
func TestFastSignSignaturesVerify(t *testing.T) {
	e := newEnv(t, nil)
	reqs := make([]Request, fastVerifyEvery+3)
	for i := range reqs {
		reqs[i] = Request{CSR: makeCSR(t, newP256(t), []string{testWLID.String()})}
	}
	res, err := e.ca.MintBatch(context.Background(), testAgent, reqs)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(e.pki.root)
	inter := x509.NewCertPool()
	inter.AddCert(e.pki.inter)
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("item %d: %v", i, r.Err)
		}
		if err := r.Cert.CheckSignatureFrom(e.pki.inter); err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
		if _, err := r.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: e.now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
		if id, err := spiffeid.FromURI(r.Cert.URIs[0]); err != nil || id != testWLID {
			t.Fatalf("item %d: id %v %v", i, id, err)
		}
	}
	if e.ca.signed.Load() != uint64(len(reqs)) {
		t.Fatalf("fast path signed %d, want %d", e.ca.signed.Load(), len(reqs))
	}
}
