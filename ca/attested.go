package ca

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// OIDAttestation identifies tier0's attestation-generation extension
// (DESIGN.md "Agent SVIDs carry their attestation"): a non-critical
// extension whose value is the DER INTEGER generation of the attestation
// the SVID descends from. The OID is not registered to tier0: only tier0
// reads it (every arc fits 31 bits, which crypto/x509 requires).
// Verifiers that do not know it ignore it (it is not critical); the
// SPIFFE ID stays the only URI SAN.
var OIDAttestation = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 37476, 9000, 64, 1}

// MintAttested is MintFor for an agent or operator SVID bound to the
// attestation generation gen (> 0), carried in the OIDAttestation
// extension.
func (c *CA) MintAttested(ctx context.Context, caller, id spiffeid.ID, csrDER []byte, ttl time.Duration, gen uint64) (Result, error) {
	if gen == 0 {
		return Result{}, fmt.Errorf("ca: mint attested %s: generation 0: %w", id, ErrInvalidID)
	}
	v, err := asn1.Marshal(int64(gen)) //nolint:gosec // G115: generations count attestations, far below 2^63
	if err != nil {
		return Result{}, fmt.Errorf("ca: mint attested %s: %w", id, err)
	}
	res, err := c.mintForExt(ctx, caller, id, csrDER, ttl, pkix.Extension{Id: OIDAttestation, Value: v})
	if err != nil {
		return res, err
	}
	if got, ok, _ := AttestationGeneration(res.Cert); !ok || got != gen {
		// Committed already, but never handed out: a bug in the encoding.
		return Result{}, fmt.Errorf("ca: mint attested %s: the signed SVID carries generation %d (present %v), want %d: %w", id, got, ok, gen, ErrIssuer)
	}
	return res, nil
}

// ErrBadAttestation: the certificate's attestation extension does not
// decode (or is repeated).
var ErrBadAttestation = errors.New("ca: malformed attestation extension")

// AttestationGeneration returns the generation cert carries, ok false when
// it carries none.
func AttestationGeneration(cert *x509.Certificate) (gen uint64, ok bool, err error) {
	for _, e := range cert.Extensions {
		if !e.Id.Equal(OIDAttestation) {
			continue
		}
		if ok {
			return 0, false, ErrBadAttestation
		}
		var v int64
		rest, err := asn1.Unmarshal(e.Value, &v)
		if err != nil || len(rest) != 0 || v <= 0 {
			return 0, false, ErrBadAttestation
		}
		gen, ok = uint64(v), true
	}
	return gen, ok, nil
}
