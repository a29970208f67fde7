package storage_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/storage"
)

// TestCertCheckAuditKeyRecord: the record of an audit key certificate
// (ca.AuditKeyRecord: no URI SAN, the trust domain ID as spiffe_id) passes
// the certificate check and chains to the root; another spiffe_id does not.
func TestCertCheckAuditKeyRecord(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	now := time.Now()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root, err := ca.NewRoot(td, rootKey, 24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	auditKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := ca.NewAuditKeyCert(td, ca.Issuer{Signer: rootKey, Cert: root}, auditKey.Public(), time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	rec := ca.AuditKeyRecord(td, cert, "n1")
	rec.Seq = 1
	c := storage.NewCertChecker([]*x509.Certificate{root}, nil)
	if p, d := c.Check(rec); p != "" {
		t.Fatalf("audit key record: %s: %s", p, d)
	}
	if seq, p, d := c.Finish(true); p != "" {
		t.Fatalf("finish: %d %s %s", seq, p, d)
	}
	bad := *rec
	bad.SPIFFEID = "spiffe://example.org/web"
	if p, _ := storage.NewCertChecker([]*x509.Certificate{root}, nil).Check(&bad); p != storage.ProblemCertMismatch {
		t.Fatalf("audit key record with a workload ID: %q", p)
	}
}
