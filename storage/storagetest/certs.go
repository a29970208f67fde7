package storagetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
)

// SVIDRecord returns the unsealed record seq of a real X.509-SVID for
// SPIFFEIDs[seq%5] signed by issuer (key signer), with every column
// derived from the certificate as the CA derives it; a JWT-SVID record
// (no certificate) when jwt.
func SVIDRecord(t testing.TB, seq uint64, issuer *x509.Certificate, signer *ecdsa.PrivateKey, jwt bool) *record.Record {
	t.Helper()
	r := Gen("certs", seq)
	if jwt {
		r.CertDER, r.IssuerKeyID = nil, "jwt:k1"
		return r
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		t.Fatal(err)
	}
	sn.Add(sn, big.NewInt(1))
	u, _ := url.Parse(r.SPIFFEID)
	nb := r.NotBefore.Truncate(time.Second)
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{}, URIs: []*url.URL{u},
		NotBefore: nb, NotAfter: nb.Add(30 * time.Minute), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	r.Serial, r.CertDER = cert.SerialNumber.Text(16), der
	r.NotBefore, r.NotAfter = record.Truncate(cert.NotBefore), record.Truncate(cert.NotAfter)
	r.IssuerKeyID, r.PublicKeySHA256 = hex.EncodeToString(issuer.SubjectKeyId), hex.EncodeToString(spki[:])
	return r
}

// CertChain returns n sealed records of real SVIDs signed by k's root
// (every fifth a JWT-SVID record) and a checkpoint at n/2.
func CertChain(t testing.TB, k *AuditKey, n int) ([]*record.Record, []record.Checkpoint) {
	t.Helper()
	recs := make([]*record.Record, n)
	prev := record.Genesis
	for i := range recs {
		recs[i] = SVIDRecord(t, uint64(i+1), k.Root, k.RootKey, (i+1)%5 == 0)
		prev = recs[i].Seal(prev)
	}
	return recs, []record.Checkpoint{k.CheckpointAfter(t, recs[n/2-1], 0)}
}

// runCertTamper: a record whose certificate disagrees with its columns, or
// does not chain to the bundle, is reported although the chain and the
// checkpoints are intact (the forged record was hashed into the chain).
func runCertTamper(t *testing.T, open func(t *testing.T) (storage.AuditStore, Tamperer)) {
	const n, bad = 20, 7
	other := NewAuditKey(t)
	tests := []struct {
		name    string
		forge   func(r *record.Record, recs []*record.Record, k *AuditKey)
		problem string
		detail  string
	}{
		{"intact", func(*record.Record, []*record.Record, *AuditKey) {}, "", ""},
		{"serial column differs (deadbeef)", func(r *record.Record, _ []*record.Record, _ *AuditKey) { r.Serial = "deadbeef" }, storage.ProblemCertMismatch, `serial column "deadbeef"`},
		{"copied certificate", func(r *record.Record, recs []*record.Record, _ *AuditKey) { r.CertDER = recs[2].CertDER }, storage.ProblemCertMismatch, "serial column"},
		{"spiffe_id column differs", func(r *record.Record, _ []*record.Record, _ *AuditKey) { r.SPIFFEID = "spiffe://example.org/evil" }, storage.ProblemCertMismatch, "spiffe_id column"},
		{"not_after column differs", func(r *record.Record, _ []*record.Record, _ *AuditKey) { r.NotAfter = r.NotAfter.Add(time.Hour) }, storage.ProblemCertMismatch, "validity columns"},
		{"issuer_key_id column differs", func(r *record.Record, _ []*record.Record, _ *AuditKey) { r.IssuerKeyID = strings.Repeat("ab", 20) }, storage.ProblemCertMismatch, "issuer_key_id column"},
		{"public key column differs", func(r *record.Record, _ []*record.Record, _ *AuditKey) { r.PublicKeySHA256 = strings.Repeat("0", 64) }, storage.ProblemCertMismatch, "public_key_sha256 column"},
		{"certificate garbage", func(r *record.Record, _ []*record.Record, _ *AuditKey) { r.CertDER = []byte{0x30, 0x03, 1, 2, 3} }, storage.ProblemCertMismatch, "does not parse"},
		{"certificate removed", func(r *record.Record, _ []*record.Record, _ *AuditKey) { r.CertDER = nil }, storage.ProblemCertMismatch, "has no certificate"},
		{"jwt record with a certificate", func(r *record.Record, recs []*record.Record, _ *AuditKey) {
			r.IssuerKeyID, r.CertDER = "jwt:k1", recs[2].CertDER
		}, storage.ProblemCertMismatch, "carries a certificate"},
		{"signed by another CA", func(r *record.Record, _ []*record.Record, _ *AuditKey) {
			*r = *SVIDRecord(t, bad, other.Root, other.RootKey, false)
		}, storage.ProblemCertChain, "no root of the bundle"},
		{"forged with the bundle root's name and key ID", func(r *record.Record, _ []*record.Record, k *AuditKey) {
			fake := *k.Root // same subject and SubjectKeyId, another key
			fake.PublicKey = other.RootKey.Public()
			*r = *SVIDRecord(t, bad, &fake, other.RootKey, false)
		}, storage.ProblemCertChain, "signature does not verify"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := open(t)
			k := NewAuditKey(t)
			recs := make([]*record.Record, n)
			prev := record.Genesis
			for i := range recs {
				recs[i] = SVIDRecord(t, uint64(i+1), k.Root, k.RootKey, (i+1)%5 == 0)
				if i+1 == bad {
					tc.forge(recs[i], recs, k)
					recs[i].Seq = bad
				}
				prev = recs[i].Seal(prev)
			}
			Append(t, s, recs, 8)
			if err := s.AppendCheckpoints(ctx, []record.Checkpoint{k.CheckpointAfter(t, recs[n-1], 0)}); err != nil {
				t.Fatal(err)
			}
			res, err := storage.VerifyAuditWith(ctx, s, storage.AuditOptions{Roots: k.Roots(), Certs: storage.NewCertChecker(k.Roots(), nil)})
			if err != nil {
				t.Fatal(err)
			}
			if tc.problem == "" {
				if !res.OK() || res.LastCheckpoint != n {
					t.Fatalf("intact: %+v", res)
				}
				return
			}
			if res.FirstBad != bad || res.Problem != tc.problem || !strings.Contains(res.Detail, tc.detail) {
				t.Fatalf("got seq %d %q (%s), want seq %d %q (%s)", res.FirstBad, res.Problem, res.Detail, bad, tc.problem, tc.detail)
			}
			t.Logf("detected: %s: %s", res.Problem, res.Detail)
			// Without the certificate check the chain is intact: the
			// forgery was hashed in.
			if plain, err := storage.VerifyAudit(ctx, s, 0, 0, k.Roots()); err != nil || !plain.OK() {
				t.Fatalf("chain-only verify: %+v, %v", plain, err)
			}
		})
	}
}

// runIntermediates: SVIDs signed by a delegated intermediate chain to the
// bundle through the intermediate's own record (ca.IssuerRecord), before or
// after them in the log; without that record they are reported.
func runIntermediates(t *testing.T, open func(t *testing.T) (storage.AuditStore, Tamperer)) {
	k := NewAuditKey(t)
	ik, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := ca.NewIntermediate(spiffeid.RequireTrustDomainFromString("example.org"), ca.Issuer{Signer: k.RootKey, Cert: k.Root}, ik.Public(), 24*time.Hour, Base.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		at      int // position of the intermediate's record (-1: none)
		problem string
	}{{"recorded first", 0, ""}, {"recorded after its first SVIDs", 3, ""}, {"never recorded", -1, storage.ProblemCertChain}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := open(t)
			var recs []*record.Record
			for i := range 6 {
				if i == tc.at {
					recs = append(recs, ca.IssuerRecord(inter, "node-0"))
				}
				recs = append(recs, SVIDRecord(t, uint64(i+1), inter, ik, false))
			}
			prev := record.Genesis
			for i, r := range recs {
				r.Seq = uint64(i + 1)
				prev = r.Seal(prev)
			}
			Append(t, s, recs, 8)
			res, err := storage.VerifyAuditWith(ctx, s, storage.AuditOptions{Roots: k.Roots(), Certs: storage.NewCertChecker(k.Roots(), nil)})
			if err != nil {
				t.Fatal(err)
			}
			if res.Problem != tc.problem || (tc.problem != "" && res.FirstBad != 1) {
				t.Fatalf("VerifyAuditWith = seq %d %q (%s), want %q", res.FirstBad, res.Problem, res.Detail, tc.problem)
			}
		})
	}
}
