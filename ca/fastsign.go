package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Signing SVIDs with an in-memory P-256 key (the delegated issuing key:
// see DESIGN.md, "Verify-after-sign"). x509.CreateCertificate verifies
// every signature it makes (an ECDSA verify costs about twice the sign);
// that check catches a remote signer (HSM, KMS) returning a wrong or
// corrupt signature, which is why every other signer still goes through
// it. For an *ecdsa.PrivateKey in this process tier0 encodes the SVID's
// TBSCertificate itself (byte for byte what CreateCertificate encodes for
// the same template: TestFastSignMatchesCreateCertificate), signs the
// SHA-256 with ecdsa.SignASN1, verifies one signature in
// fastVerifyEvery (and the first), and validate still re-parses the result.

// fastVerifyEvery is the sampling period of the signature check on the
// in-memory fast path.
const fastVerifyEvery = 64

var (
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidExtKeyUsage     = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtExtKeyUsage  = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidExtBasicConstr  = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtAKI          = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtSAN          = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidServerAuth      = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	oidClientAuth      = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
)

// fastKey returns the issuer's key when it is an in-memory P-256 key.
func fastKey(s crypto.Signer) (*ecdsa.PrivateKey, bool) {
	k, ok := s.(*ecdsa.PrivateKey)
	return k, ok && k.Curve == elliptic.P256()
}

// sign returns the DER SVID for tmpl (from build) and the subject key pub.
func (c *CA) sign(st *issuerState, tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	key, ok := fastKey(st.iss.Signer)
	if !ok || len(tmpl.ExtraExtensions) > 0 { // attested SVIDs (attested.go): rare, the general path encodes the extension
		// CreateCertificate checks that the signer's public key equals the
		// issuer certificate's and verifies the returned signature with it
		// (crypto/x509 signTBS), so a faulty HSM/KMS signature never escapes.
		return x509.CreateCertificate(rand.Reader, tmpl, st.iss.Cert, pub, st.iss.Signer)
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	tbs, err := svidTBS(tmpl, st.iss.Cert.RawSubject, spki)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(tbs)
	sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	if err != nil {
		return nil, err
	}
	if c.signed.Add(1)%fastVerifyEvery == 1 && !ecdsa.VerifyASN1(&key.PublicKey, h[:], sig) {
		return nil, fmt.Errorf("signature made with the in-memory issuing key does not verify")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidECDSAWithSHA256) })
		b.AddASN1BitString(sig)
	})
	return b.Bytes()
}

// svidTBS encodes the TBSCertificate x509.CreateCertificate produces for
// an SVID template of build (serial, validity, one URI SAN, AKI, the fixed
// key usages, CA:false, empty subject) issued under an ECDSA P-256 key.
func svidTBS(tmpl *x509.Certificate, issuer, spki []byte) ([]byte, error) {
	if len(tmpl.URIs) != 1 {
		return nil, fmt.Errorf("want one URI SAN, got %d", len(tmpl.URIs))
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddASN1Int64(2) })
		b.AddASN1BigInt(tmpl.SerialNumber)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidECDSAWithSHA256) })
		b.AddBytes(issuer)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			addTime(b, tmpl.NotBefore)
			addTime(b, tmpl.NotAfter)
		})
		b.AddASN1(cbasn1.SEQUENCE, func(*cryptobyte.Builder) {}) // empty subject
		b.AddBytes(spki)
		b.AddASN1(cbasn1.Tag(3).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				addExt(b, oidExtKeyUsage, true, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) { b.AddBytes([]byte{7, 0x80}) }) // digitalSignature; 7 unused bits
				})
				addExt(b, oidExtExtKeyUsage, false, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(oidServerAuth)
						b.AddASN1ObjectIdentifier(oidClientAuth)
					})
				})
				addExt(b, oidExtBasicConstr, true, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(*cryptobyte.Builder) {}) // CA:false, no path length
				})
				if len(tmpl.AuthorityKeyId) > 0 {
					addExt(b, oidExtAKI, false, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(tmpl.AuthorityKeyId) })
						})
					})
				}
				addExt(b, oidExtSAN, true, func(b *cryptobyte.Builder) { // critical: the subject is empty
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(tmpl.URIs[0].String())) })
					})
				})
			})
		})
	})
	return b.Bytes()
}

// addTime encodes t as encoding/asn1 does: UTCTime for 1950..2049, else
// GeneralizedTime.
func addTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC()
	if y := t.Year(); y >= 1950 && y < 2050 {
		b.AddASN1UTCTime(t)
		return
	}
	b.AddASN1GeneralizedTime(t)
}

func addExt(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, critical bool, value func(*cryptobyte.Builder)) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if critical {
			b.AddASN1Boolean(true)
		}
		b.AddASN1(cbasn1.OCTET_STRING, value)
	})
}
