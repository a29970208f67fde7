package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"testing"

	"github.com/tier0-ca/tier0/ca/record"
)

type nopJournal struct{}

func (nopJournal) Commit(context.Context, []*record.Record) error { return nil }

// opaqueSigner hides the key's type: the CA then signs through
// x509.CreateCertificate (sign + verify), as for an HSM or KMS.
type opaqueSigner struct{ crypto.Signer }

func benchMint(b *testing.B, n int, opaque bool) {
	e := newEnv(b, func(c *Config) {
		c.Journal = nopJournal{}
		c.Logger = discardLogger
		if opaque {
			c.Issuer.Signer = opaqueSigner{c.Issuer.Signer}
		}
	})
	reqs := make([]Request, n)
	for i := range reqs {
		reqs[i] = Request{CSR: makeCSR(b, newP256(b), []string{testWLID.String()})}
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := e.ca.MintBatch(ctx, testAgent, reqs)
		if err != nil || res[0].Err != nil {
			b.Fatal(err, res[0].Err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/svid")
}

// BenchmarkMintBatch mints with the in-memory P-256 issuing key (the fast
// path of fastsign.go) and, as "createcert", with the same key behind an
// opaque crypto.Signer (x509.CreateCertificate, the path of remote signers
// and of every SVID before fastsign.go).
func BenchmarkMintBatch(b *testing.B) {
	for _, n := range []int{1, 32} {
		b.Run(fmt.Sprintf("fast/%d", n), func(b *testing.B) { benchMint(b, n, false) })
		b.Run(fmt.Sprintf("createcert/%d", n), func(b *testing.B) { benchMint(b, n, true) })
	}
}

func BenchmarkParseCSR(b *testing.B) {
	der := makeCSR(b, newP256(b), []string{testWLID.String()})
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseCSR(der, testTD, DefaultMaxCSRBytes); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateCertificateBaseline is the floor: a bare
// x509.CreateCertificate of an equivalent SVID template.
func BenchmarkCreateCertificateBaseline(b *testing.B) {
	e := newEnv(b, nil)
	st := e.ca.issuer.Load()
	pub := newP256(b).Public()
	b.ReportAllocs()
	for b.Loop() {
		tmpl, err := e.ca.build(st, e.now, testWLID, pub, DefaultMaxTTL)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := x509.CreateCertificate(rand.Reader, tmpl, st.iss.Cert, pub, st.iss.Signer); err != nil {
			b.Fatal(err)
		}
	}
}
