package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ca/record"
)

type allowAll struct{}

func (allowAll) Authorize(_, _ spiffeid.ID) (ca.Grant, error) {
	return ca.Grant{EntryID: "e1", TTL: 30 * time.Minute}, nil
}

type memJournal struct{ prev []byte }

func (j *memJournal) Commit(_ context.Context, recs []*record.Record) error {
	for i, r := range recs {
		r.Seq = uint64(i + 1)
		r.CommittedAt = record.Truncate(time.Now())
		j.prev = r.Seal(j.prev)
	}
	return nil
}

func Example() {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	now := time.Now()

	// Root key (in production: an HSM/KMS signer) and a self-signed root.
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root, err := ca.NewRoot(td, rootKey, 24*time.Hour, now)
	if err != nil {
		panic(err)
	}
	c, err := ca.New(ca.Config{
		TrustDomain: td,
		Issuer:      ca.Issuer{Signer: rootKey, Cert: root}, // root issues directly: empty Chain
		NodeID:      "node-1",
		Authorizer:  allowAll{},
		Journal:     &memJournal{prev: record.Genesis},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		panic(err)
	}

	// The workload's CSR carries its SPIFFE ID as the only URI SAN.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://example.org/ns/prod/sa/web")
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)

	agent := spiffeid.RequireFromString("spiffe://example.org/tier0/agent/host-1")
	res, err := c.MintBatch(context.Background(), agent, []ca.Request{{CSR: csr}})
	if err != nil {
		panic(err)
	}
	r := res[0]
	if r.Err != nil {
		panic(r.Err)
	}
	fmt.Println(r.ID, len(r.Chain), r.Cert.NotAfter.Sub(r.Cert.NotBefore), r.Record.Seq)
	// Output: spiffe://example.org/ns/prod/sa/web 1 30m10s 1
}
