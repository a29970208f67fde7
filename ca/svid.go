package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/tier0-ca/tier0/ca/record"
)

// svidEKUs is the exact extended key usage list of every SVID.
var svidEKUs = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}

// issued is one signed and validated SVID waiting for its journal commit.
type issued struct {
	cert     *x509.Certificate
	rec      *record.Record
	idem     uint64 // idempotency key hash (idem.go), 0: none
	replayed bool   // rec was committed before, for the same request
	grant    Grant  // what authorized it (zero for MintFor)
}

// resolveTTL maps 0 to the default and checks the bounds [MinTTL,
// MaxTTL] (a request outside them is bad input). A default from a grant
// (the entry's TTL) is also a ceiling: a longer request within the bounds
// is clamped to it (DESIGN.md "TTL"), for X509- and JWT-SVIDs alike.
func (c *CA) resolveTTL(ttl, def time.Duration) (time.Duration, error) {
	if ttl == 0 {
		ttl = def
	}
	if ttl == 0 {
		ttl = c.cfg.MaxTTL
	}
	if ttl < c.cfg.MinTTL || ttl > c.cfg.MaxTTL {
		return 0, fmt.Errorf("ca: ttl %s outside bounds [%s, %s]: %w", ttl, c.cfg.MinTTL, c.cfg.MaxTTL, ErrInvalidTTL)
	}
	if def > 0 && ttl > def {
		ttl = def
	}
	return ttl, nil
}

// issue runs build -> sign -> validate for one SVID. now is already
// truncated to the second (X.509 time precision).
func (c *CA) issue(st *issuerState, now time.Time, caller, id spiffeid.ID, pub crypto.PublicKey, ttl time.Duration, ext ...pkix.Extension) (*issued, error) {
	tmpl, err := c.build(st, now, id, pub, ttl)
	if err != nil {
		return nil, err
	}
	tmpl.ExtraExtensions = ext // non-critical tier0 extensions only (attested.go)
	// sign verifies every signature of a remote or non-P-256 signer and a
	// sample of the in-memory key's (fastsign.go); validate re-parses all.
	der, err := c.sign(st, tmpl, pub)
	if err != nil {
		return nil, fmt.Errorf("ca: sign svid for %s: %w: %w", id, err, ErrIssuer)
	}
	cert, err := validate(st, der, tmpl, pub)
	if err != nil {
		return nil, err
	}
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return &issued{cert: cert, rec: &record.Record{
		Serial:          cert.SerialNumber.Text(16),
		SPIFFEID:        id.String(),
		AgentID:         agentString(caller),
		NotBefore:       record.Truncate(cert.NotBefore),
		NotAfter:        record.Truncate(cert.NotAfter),
		IssuerKeyID:     st.skiHex,
		PublicKeySHA256: hex.EncodeToString(spki[:]),
		NodeID:          c.cfg.NodeID,
		CertDER:         der,
	}}, nil
}

func agentString(caller spiffeid.ID) string {
	if caller.IsZero() {
		return ""
	}
	return caller.String()
}

// build returns the SVID template: the lifetime is capped at the issuer's
// NotAfter and refused if the cap leaves less than MinTTL.
func (c *CA) build(st *issuerState, now time.Time, id spiffeid.ID, pub crypto.PublicKey, ttl time.Duration) (*x509.Certificate, error) {
	iss := st.iss.Cert
	if now.Before(iss.NotBefore) {
		return nil, fmt.Errorf("ca: issuer not valid before %s: %w", iss.NotBefore.UTC().Format(time.RFC3339), ErrIssuer)
	}
	notAfter := now.Add(ttl)
	if notAfter.After(iss.NotAfter) {
		notAfter = iss.NotAfter
		if notAfter.Sub(now) < c.cfg.MinCappedTTL {
			return nil, fmt.Errorf("ca: issuer expires too soon (%s): %w", iss.NotAfter.UTC().Format(time.RFC3339), ErrIssuer)
		}
	}
	notBefore := now.Add(-c.cfg.Backdate)
	if notBefore.Before(iss.NotBefore) {
		notBefore = iss.NotBefore
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           svidEKUs,
		BasicConstraintsValid: true,
		IsCA:                  false,
		URIs:                  []*url.URL{id.URL()},
		AuthorityKeyId:        iss.SubjectKeyId,
	}, nil
}

// newSerial returns a positive, non-zero random serial of at most 128 bits.
func newSerial() (*big.Int, error) {
	var b [16]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("ca: serial: %v: %w", err, ErrIssuer)
		}
		if s := new(big.Int).SetBytes(b[:]); s.Sign() > 0 {
			return s, nil
		}
	}
}

// validate re-parses the signed certificate and checks the SVID profile
// against what build asked for: exact serial, validity, issuer name and
// AKI, subject key, one URI SAN and no other SAN, digitalSignature only,
// serverAuth+clientAuth only, CA:false. It is the last line of defence
// against a template or library bug producing a certificate we did not mean
// to issue; a failure is ErrIssuer. The signature itself was verified by
// CreateCertificate, or on a sample for the in-memory key (see sign).
func validate(st *issuerState, der []byte, tmpl *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: validate svid: parse: %v: %w", err, ErrIssuer)
	}
	fail := func(what string) (*x509.Certificate, error) {
		return nil, fmt.Errorf("ca: validate svid %s: %s: %w", tmpl.URIs[0], what, ErrIssuer)
	}
	iss := st.iss.Cert
	k, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	switch {
	case cert.SerialNumber.Cmp(tmpl.SerialNumber) != 0 || cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() > 128:
		return fail("serial")
	case !cert.NotBefore.Equal(tmpl.NotBefore.Truncate(time.Second)) || !cert.NotAfter.Equal(tmpl.NotAfter.Truncate(time.Second)):
		return fail("validity")
	case cert.NotAfter.After(iss.NotAfter) || cert.NotBefore.Before(iss.NotBefore):
		return fail("validity outlives issuer")
	case !bytes.Equal(cert.RawIssuer, iss.RawSubject) || !bytes.Equal(cert.AuthorityKeyId, iss.SubjectKeyId):
		return fail("issuer name or authority key id")
	case !ok || !k.Equal(pub):
		return fail("subject public key")
	case len(cert.URIs) != 1 || cert.URIs[0].String() != tmpl.URIs[0].String():
		return fail("uri san")
	case len(cert.DNSNames)+len(cert.IPAddresses)+len(cert.EmailAddresses) != 0:
		return fail("unexpected san")
	case !cert.BasicConstraintsValid || cert.IsCA:
		return fail("basic constraints")
	case cert.KeyUsage != x509.KeyUsageDigitalSignature:
		return fail("key usage")
	case len(cert.ExtKeyUsage) != 2 || cert.ExtKeyUsage[0] != svidEKUs[0] || cert.ExtKeyUsage[1] != svidEKUs[1] || len(cert.UnknownExtKeyUsage) != 0:
		return fail("extended key usage")
	}
	return cert, nil
}
