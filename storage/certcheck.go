package storage

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage/serial"
)

// Problems reported by a certificate check (AuditOptions.Certs).
const (
	// ProblemCertMismatch: cert_der does not match the record's columns
	// (serial, SPIFFE ID, validity, issuer key ID or public key), or does
	// not parse, or a JWT-SVID record carries one / an X.509 record lacks it.
	ProblemCertMismatch = "certificate mismatch"
	// ProblemCertChain: the certificate was not signed by a root of the
	// bundle (or an intermediate that chains to one).
	ProblemCertChain = "certificate not chaining to the bundle"
)

// CertChecker checks records' certificates against their columns and the
// trust bundle, in log order: an intermediate the CA recorded (a record
// whose certificate is a CA, ca.IssuerRecord) that chains to a root
// becomes a known issuer for the records after it and, when a record
// signed by it came first, for those too (Finish). One per verification;
// not safe for concurrent use.
type CertChecker struct {
	roots    *x509.CertPool
	rootKeys map[string]bool
	issuers  map[string]*x509.Certificate // hex SubjectKeyId -> root or verified intermediate
	pending  []pendingCert                // signed by an issuer not known yet, in seq order
	// Unchained counts records whose issuer was never found when the
	// verification did not start at the beginning of the log (Finish).
	Unchained int
}

type pendingCert struct {
	seq  uint64
	cert *x509.Certificate
}

// maxPending bounds the records held for an issuer recorded later.
const maxPending = 100000

// NewCertChecker returns a checker for certificates issued by roots or by
// intermediates (each must chain to roots; those that do not are ignored).
func NewCertChecker(roots, intermediates []*x509.Certificate) *CertChecker {
	pool := x509.NewCertPool()
	c := &CertChecker{issuers: map[string]*x509.Certificate{}, roots: pool, rootKeys: map[string]bool{}}
	for _, r := range roots {
		pool.AddCert(r)
		c.issuers[hex.EncodeToString(r.SubjectKeyId)] = r
		c.rootKeys[hex.EncodeToString(r.SubjectKeyId)] = true
	}
	for _, in := range intermediates {
		if !in.IsCA {
			continue
		}
		if _, err := in.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: in.NotBefore.Add(time.Second),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
			c.issuers[hex.EncodeToString(in.SubjectKeyId)] = in
		}
	}
	return c
}

// Check returns the problem with r's certificate ("" when none) and a
// sentence naming the field. Records must be checked in log order.
func (c *CertChecker) Check(r *record.Record) (problem, detail string) {
	cert, p, d := columns(r)
	if p != "" || cert == nil {
		return p, d
	}
	return c.chain(r, cert, false)
}

// CheckBatch checks records in log order, the stateless part (parsing,
// columns, the signature of an issuer already known) on every core, and
// returns the first problem (seq 0: none).
func (c *CertChecker) CheckBatch(recs []*record.Record) (seq uint64, problem, detail string) {
	type result struct {
		cert            *x509.Certificate
		problem, detail string
		signed          bool
	}
	res := make([]result, len(recs))
	workers := min(runtime.GOMAXPROCS(0), len(recs))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(recs); i += workers {
				r := recs[i]
				cert, p, d := columns(r)
				res[i] = result{cert: cert, problem: p, detail: d}
				if p != "" || cert == nil {
					continue
				}
				if iss := c.issuers[r.IssuerKeyID]; iss != nil { // read-only while the workers run
					sp, sd := signedBy(r.Seq, cert, iss)
					res[i].problem, res[i].detail, res[i].signed = sp, sd, sp == ""
				}
			}
		})
	}
	wg.Wait()
	for i, r := range recs {
		x := res[i]
		if x.problem == "" && x.cert != nil {
			x.problem, x.detail = c.chain(r, x.cert, x.signed)
		}
		if x.problem != "" {
			return r.Seq, x.problem, x.detail
		}
	}
	return 0, "", ""
}

// columns parses r's certificate and compares it with the columns; cert
// is nil for a JWT-SVID record and an admin event.
func columns(r *record.Record) (cert *x509.Certificate, problem, detail string) {
	mismatch := func(format string, args ...any) (*x509.Certificate, string, string) {
		return nil, ProblemCertMismatch, fmt.Sprintf("record %d: ", r.Seq) + fmt.Sprintf(format, args...)
	}
	if r.IsEvent() {
		// An admin event: no certificate; its validity columns are its
		// commit time (not hashed, so compared here).
		if err := record.CheckEvent(r); err != nil {
			return mismatch("admin event: %v", err)
		}
		if !r.NotBefore.Equal(r.CommittedAt) || !r.NotAfter.Equal(r.CommittedAt) {
			return mismatch("admin event: validity columns %s..%s differ from its commit time %s", r.NotBefore.Format(time.RFC3339Nano),
				r.NotAfter.Format(time.RFC3339Nano), r.CommittedAt.Format(time.RFC3339Nano))
		}
		return nil, "", ""
	}
	if KindOf(r.IssuerKeyID) == KindJWT {
		if len(r.CertDER) != 0 {
			return mismatch("a JWT-SVID record (issuer %s) carries a certificate", r.IssuerKeyID)
		}
		return nil, "", ""
	}
	if len(r.CertDER) == 0 {
		return mismatch("an X.509 record has no certificate")
	}
	cert, err := x509.ParseCertificate(r.CertDER)
	if err != nil {
		return mismatch("cert_der does not parse: %v", err)
	}
	if s, err := serial.Canonical(r.Serial); err != nil || s != serial.Format(cert.SerialNumber) {
		return mismatch("serial column %q, certificate serial %s", r.Serial, serial.Format(cert.SerialNumber))
	}
	if auditKeyCert(cert) {
		// An audit key certificate (ca.AuditKeyRecord): no URI SAN, the
		// record names the trust domain.
		if td, err := spiffeid.TrustDomainFromString(r.SPIFFEID); err != nil || td.IDString() != r.SPIFFEID {
			return mismatch("spiffe_id column %q of an audit key certificate is not a trust domain ID", r.SPIFFEID)
		}
	} else if len(cert.URIs) != 1 || cert.URIs[0].String() != r.SPIFFEID {
		return mismatch("spiffe_id column %q, certificate URI SANs %v", r.SPIFFEID, cert.URIs)
	}
	if !record.Truncate(cert.NotBefore).Equal(r.NotBefore) || !record.Truncate(cert.NotAfter).Equal(r.NotAfter) {
		return mismatch("validity columns %s..%s, certificate %s..%s", r.NotBefore.Format(time.RFC3339), r.NotAfter.Format(time.RFC3339),
			cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if aki := hex.EncodeToString(cert.AuthorityKeyId); aki != r.IssuerKeyID {
		return mismatch("issuer_key_id column %s, certificate authority key ID %s", r.IssuerKeyID, aki)
	}
	if spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo); hex.EncodeToString(spki[:]) != r.PublicKeySHA256 {
		return mismatch("public_key_sha256 column %s, certificate key %x", r.PublicKeySHA256, spki)
	}
	return cert, "", ""
}

// chain checks cert's issuer (signed: its signature already verified
// against the issuer now known), learns a recorded intermediate, or holds
// the record until its issuer is recorded (Finish).
func (c *CertChecker) chain(r *record.Record, cert *x509.Certificate, signed bool) (problem, detail string) {
	iss := c.issuers[r.IssuerKeyID]
	if iss == nil {
		if len(c.pending) >= maxPending {
			return ProblemCertChain, c.unknown(c.pending[0].seq, c.pending[0].cert)
		}
		c.pending = append(c.pending, pendingCert{r.Seq, cert})
		return "", ""
	}
	if !signed {
		if p, d := signedBy(r.Seq, cert, iss); p != "" {
			return p, d
		}
	}
	if cert.IsCA && cert.BasicConstraintsValid && c.rootKeys[r.IssuerKeyID] {
		c.issuers[hex.EncodeToString(cert.SubjectKeyId)] = cert // an intermediate the CA recorded
	}
	return "", ""
}

func signedBy(seq uint64, cert, iss *x509.Certificate) (problem, detail string) {
	key := hex.EncodeToString(iss.SubjectKeyId)
	if !bytes.Equal(cert.RawIssuer, iss.RawSubject) {
		return ProblemCertChain, fmt.Sprintf("record %d: certificate issuer %q is not the subject %q of key %s", seq, cert.Issuer, iss.Subject, key)
	}
	if err := cert.CheckSignatureFrom(iss); err != nil {
		return ProblemCertChain, fmt.Sprintf("record %d: signature does not verify with key %s: %v", seq, key, err)
	}
	return "", ""
}

func (c *CertChecker) unknown(seq uint64, cert *x509.Certificate) string {
	return fmt.Sprintf("record %d: issuer key %x is no root of the bundle nor an intermediate recorded in the log that chains to one", seq, cert.AuthorityKeyId)
}

// Finish checks the records whose issuer was not known when they were
// read, against the issuers learned since, and returns the lowest-seq
// problem. fromStart says the verification read the log from its
// beginning (genesis or a lineage base): an issuer never found is then a
// problem (ProblemCertChain); otherwise its record may lie before the
// range (pruned or not asked for) and the record only counts in Unchained.
func (c *CertChecker) Finish(fromStart bool) (seq uint64, problem, detail string) {
	for _, p := range c.pending {
		iss := c.issuers[hex.EncodeToString(p.cert.AuthorityKeyId)]
		if iss == nil {
			if fromStart {
				return p.seq, ProblemCertChain, c.unknown(p.seq, p.cert)
			}
			c.Unchained++
			continue
		}
		if pr, d := signedBy(p.seq, p.cert, iss); pr != "" {
			return p.seq, pr, d
		}
	}
	return 0, "", ""
}

// auditKeyCert reports whether cert is an audit key certificate: not a
// CA, no URI SAN, and the checkpoint extended key usage.
func auditKeyCert(cert *x509.Certificate) bool {
	return !cert.IsCA && len(cert.URIs) == 0 && len(cert.UnknownExtKeyUsage) == 1 &&
		cert.UnknownExtKeyUsage[0].Equal(record.CheckpointEKU)
}
