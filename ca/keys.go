package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// caBackdate is the NotBefore backdate of root and intermediate certificates.
const caBackdate = time.Minute

// NewRoot returns a self-signed root for td signed by s: CA:true, URI SAN
// spiffe://TD, KeyUsage certSign|crlSign, SubjectKeyId set, valid from
// now-1m for lifetime.
func NewRoot(td spiffeid.TrustDomain, s crypto.Signer, lifetime time.Duration, now time.Time) (*x509.Certificate, error) {
	if td.IsZero() || s == nil || lifetime <= 0 {
		return nil, fmt.Errorf("ca: new root: trust domain, signer and positive lifetime required: %w", ErrIssuer)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"tier0"}, CommonName: td.Name() + " root"},
		NotBefore:             now.Add(-caBackdate),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{td.ID().URL()},
	}
	// CreateCertificate computes the SubjectKeyId for CA templates.
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, s.Public(), s)
	if err != nil {
		return nil, fmt.Errorf("ca: new root: %v: %w", err, ErrIssuer)
	}
	return parseCA(der)
}

// childValidity is the validity of a certificate parent signs: backdated by
// caBackdate but not before the parent's NotBefore, and NotAfter capped at
// the parent's (an error once the parent has expired).
func childValidity(what string, parent *x509.Certificate, lifetime time.Duration, now time.Time) (notBefore, notAfter time.Time, err error) {
	notAfter = now.Add(lifetime)
	if notAfter.After(parent.NotAfter) {
		notAfter = parent.NotAfter
	}
	if !notAfter.After(now) {
		return time.Time{}, time.Time{}, fmt.Errorf("ca: %s: parent expired at %s: %w", what, parent.NotAfter.UTC().Format(time.RFC3339), ErrIssuer)
	}
	notBefore = now.Add(-caBackdate)
	if notBefore.Before(parent.NotBefore) {
		notBefore = parent.NotBefore
	}
	return notBefore, notAfter, nil
}

// NewIntermediate returns a CA certificate for pub signed by parent: CA:true
// with path length zero (it may sign only SVIDs), URI SAN spiffe://TD,
// SubjectKeyId and AuthorityKeyId set, NotAfter capped at the parent's.
func NewIntermediate(td spiffeid.TrustDomain, parent Issuer, pub crypto.PublicKey, lifetime time.Duration, now time.Time) (*x509.Certificate, error) {
	if td.IsZero() || pub == nil || lifetime <= 0 {
		return nil, fmt.Errorf("ca: new intermediate: trust domain, public key and positive lifetime required: %w", ErrIssuer)
	}
	if _, err := newIssuerState(parent); err != nil {
		return nil, fmt.Errorf("ca: new intermediate: parent: %w", err)
	}
	if parent.Cert.MaxPathLenZero {
		return nil, fmt.Errorf("ca: new intermediate: parent has path length zero: %w", ErrIssuer)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	notBefore, notAfter, err := childValidity("new intermediate", parent.Cert, lifetime, now)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"tier0"}, CommonName: td.Name() + " intermediate", SerialNumber: serial.Text(16)},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		URIs:                  []*url.URL{td.ID().URL()},
		AuthorityKeyId:        parent.Cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, pub, parent.Signer)
	if err != nil {
		return nil, fmt.Errorf("ca: new intermediate: %v: %w", err, ErrIssuer)
	}
	return parseCA(der)
}

func parseCA(der []byte) (*x509.Certificate, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse new ca certificate: %v: %w", err, ErrIssuer)
	}
	if len(cert.SubjectKeyId) == 0 {
		return nil, fmt.Errorf("ca: new ca certificate has no SubjectKeyId: %w", ErrIssuer)
	}
	return cert, nil
}
