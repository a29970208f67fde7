package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/internal/redact"
)

// RSA modulus bounds accepted in CSRs.
const (
	MinRSABits = 2048
	MaxRSABits = 8192
)

// ParseCSR parses and checks a DER CSR: size at most maxBytes, well-formed,
// an acceptable key (ECDSA P-256 or RSA 2048..8192), a valid self-signature
// (checked exactly once), no DNS/IP/email SANs, and exactly one URI SAN that
// is a SPIFFE ID in td with a non-empty path. It returns the CSR and that ID
// (an ID outside td is returned with the error, for the decision log).
//
// ParseCSR does not reject reserved /tier0 paths: callers that issue to
// workloads also call ValidateWorkloadID.
func ParseCSR(der []byte, td spiffeid.TrustDomain, maxBytes int) (*x509.CertificateRequest, spiffeid.ID, error) {
	return parseCSR(der, td, maxBytes, false)
}

// parseCSR is ParseCSR; with allowEmpty a CSR without URI SAN is accepted and
// the zero ID returned (MintFor, where the caller names the ID).
func parseCSR(der []byte, td spiffeid.TrustDomain, maxBytes int, allowEmpty bool) (*x509.CertificateRequest, spiffeid.ID, error) {
	if len(der) == 0 {
		return nil, spiffeid.ID{}, fmt.Errorf("ca: csr is empty: %w", ErrInvalidCSR)
	}
	if maxBytes > 0 && len(der) > maxBytes {
		return nil, spiffeid.ID{}, fmt.Errorf("ca: csr of %d bytes exceeds limit of %d bytes: %w", len(der), maxBytes, ErrInvalidCSR)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		msg := err.Error()
		if strings.HasPrefix(msg, "asn1:") { // long, unstable struct dumps
			msg = "malformed ASN.1 DER"
		}
		return nil, spiffeid.ID{}, fmt.Errorf("ca: parse csr: %s: %w", msg, ErrInvalidCSR)
	}
	// Key before signature: cheap, and a tiny RSA key would otherwise fail
	// CheckSignature with a less helpful message.
	if err := checkKey(csr.PublicKey); err != nil {
		return nil, spiffeid.ID{}, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, spiffeid.ID{}, fmt.Errorf("ca: csr signature: %w: %w", err, ErrInvalidCSR)
	}
	if n := len(csr.DNSNames) + len(csr.IPAddresses) + len(csr.EmailAddresses); n > 0 {
		return nil, spiffeid.ID{}, fmt.Errorf("ca: csr has %d DNS/IP/email SANs, want none: %w", n, ErrInvalidCSR)
	}
	switch len(csr.URIs) {
	case 0:
		if allowEmpty {
			return csr, spiffeid.ID{}, nil
		}
		return nil, spiffeid.ID{}, fmt.Errorf("ca: csr has no URI SAN, want exactly one: %w", ErrInvalidCSR)
	case 1:
	default:
		return nil, spiffeid.ID{}, fmt.Errorf("ca: csr has %d URI SANs, want exactly one: %w", len(csr.URIs), ErrInvalidCSR)
	}
	uri := csr.URIs[0].String()
	if err := checkIDLength(uri); err != nil {
		return nil, spiffeid.ID{}, fmt.Errorf("ca: csr URI SAN: %w", err)
	}
	id, err := spiffeid.FromURI(csr.URIs[0])
	if err != nil {
		return nil, spiffeid.ID{}, fmt.Errorf("ca: csr URI SAN %s: %w: %w", redact.Quote(uri), err, ErrInvalidID)
	}
	if err := validateMember(td, id); err != nil {
		return nil, id, err // the ID asked for, for the decision log
	}
	return csr, id, nil
}

// checkKey accepts ECDSA P-256 and RSA keys of MinRSABits..MaxRSABits.
func checkKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("ca: ecdsa curve %s not allowed, want P-256: %w", k.Curve.Params().Name, ErrWeakKey)
		}
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < MinRSABits || bits > MaxRSABits {
			return fmt.Errorf("ca: rsa key of %d bits not allowed, want %d..%d: %w", bits, MinRSABits, MaxRSABits, ErrWeakKey)
		}
	default:
		return fmt.Errorf("ca: public key type %T not allowed, want ECDSA P-256 or RSA: %w", pub, ErrWeakKey)
	}
	return nil
}
