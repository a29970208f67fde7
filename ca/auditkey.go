package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca/record"
)

// NewAuditKeyCert returns the certificate of the audit key pub (which signs
// journal checkpoints), signed by parent (a CA root): not a CA, KeyUsage
// digitalSignature, the single extended key usage record.CheckpointEKU and
// no URI SAN, so it is no X509-SVID and authenticates nobody. NotAfter is
// capped at the parent's. Verifiers check checkpoints with only the bundle.
func NewAuditKeyCert(td spiffeid.TrustDomain, parent Issuer, pub crypto.PublicKey, lifetime time.Duration, now time.Time) (*x509.Certificate, error) {
	if td.IsZero() || pub == nil || lifetime <= 0 || parent.Cert == nil || parent.Signer == nil {
		return nil, fmt.Errorf("ca: new audit key certificate: trust domain, parent, public key and positive lifetime required: %w", ErrIssuer)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	notBefore, notAfter, err := childValidity("new audit key certificate", parent.Cert, lifetime, now)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"tier0"}, CommonName: td.Name() + " audit checkpoint key"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{record.CheckpointEKU},
		BasicConstraintsValid: true,
		AuthorityKeyId:        parent.Cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, pub, parent.Signer)
	if err != nil {
		return nil, fmt.Errorf("ca: new audit key certificate: %w: %w", err, ErrIssuer)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse audit key certificate: %w: %w", err, ErrIssuer)
	}
	return cert, nil
}

// AuditKeyRecord returns the journal record of an audit key certificate
// (NewAuditKeyCert): it has no URI SAN, so SPIFFEID is the trust domain's
// ID; IssuerKeyID is the root's SubjectKeyId, CertDER the full
// certificate. storage.CertChecker accepts the trust domain ID for a
// certificate with the checkpoint EKU and no URI.
func AuditKeyRecord(td spiffeid.TrustDomain, cert *x509.Certificate, nodeID string) *record.Record {
	r := IssuerRecord(cert, nodeID)
	r.SPIFFEID = td.IDString()
	return r
}
