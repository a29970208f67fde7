package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"runtime"
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

// mintAllocBudget is the allocation budget of one SVID minted in a batch of
// 32 (nop journal): 203 measured when it was set (Go 1.26.8), plus ~10%.
const mintAllocBudget = 225

// BenchmarkMintAllocGuard is a regression guard, not a timing: it fails
// when minting one SVID allocates more than mintAllocBudget objects
// (counted, so independent of machine load). CI runs it in short mode:
//
//	go test -short -run '^$' -bench MintAllocGuard -benchtime 20x ./ca/
func BenchmarkMintAllocGuard(b *testing.B) {
	const n = 32
	e := newEnv(b, func(c *Config) { c.Journal = nopJournal{}; c.Logger = discardLogger })
	reqs := make([]Request, n)
	for i := range reqs {
		reqs[i] = Request{CSR: makeCSR(b, newP256(b), []string{testWLID.String()})}
	}
	ctx := context.Background()
	if _, err := e.ca.MintBatch(ctx, testAgent, reqs); err != nil { // warm up (lazy init)
		b.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for b.Loop() {
		res, err := e.ca.MintBatch(ctx, testAgent, reqs)
		if err != nil || res[0].Err != nil {
			b.Fatal(err, res[0].Err)
		}
	}
	runtime.ReadMemStats(&after)
	per := float64(after.Mallocs-before.Mallocs) / float64(b.N*n)
	b.ReportMetric(per, "allocs/svid")
	if per > mintAllocBudget {
		b.Fatalf("minting allocates %.1f objects per SVID, budget %d: find the new allocation (go test -bench MintBatch -memprofile)", per, mintAllocBudget)
	}
}
