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
	tbs, err := svidTBS(tmpl, st.iss.Cert.RawSubject, pub)
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
	// Certificate ::= SEQUENCE { tbs, AlgorithmIdentifier, BIT STRING }
	body := len(tbs) + len(algECDSAWithSHA256) + tlvLen(1+len(sig))
	der := make([]byte, 0, tlvLen(body))
	der = appendHdr(der, 0x30, body)
	der = append(der, tbs...)
	der = append(der, algECDSAWithSHA256...)
	der = appendHdr(der, 0x03, 1+len(sig))
	der = append(der, 0) // no unused bits
	return append(der, sig...), nil
}

// svidTBS encodes the TBSCertificate x509.CreateCertificate produces for
// an SVID template of build (serial, validity, one URI SAN, AKI, the fixed
// key usages, CA:false, empty subject) issued under an ECDSA P-256 key,
// into one buffer (lengths computed first: no intermediate allocations).
func svidTBS(tmpl *x509.Certificate, issuer []byte, pub crypto.PublicKey) ([]byte, error) {
	if len(tmpl.URIs) != 1 {
		return nil, fmt.Errorf("want one URI SAN, got %d", len(tmpl.URIs))
	}
	if tmpl.SerialNumber.Sign() <= 0 || tmpl.SerialNumber.BitLen() > 152 {
		return nil, fmt.Errorf("serial out of range")
	}
	var point []byte // P-256: canonical SPKI is a fixed prefix and the point
	var spki []byte
	if k, ok := pub.(*ecdsa.PublicKey); ok && k.Curve == elliptic.P256() {
		p, err := k.Bytes()
		if err != nil {
			return nil, err
		}
		point = p
	} else {
		var err error
		if spki, err = x509.MarshalPKIXPublicKey(pub); err != nil {
			return nil, err
		}
	}
	spkiLen := len(spki)
	if point != nil {
		spkiLen = len(p256SPKIPrefix) + len(point)
	}
	var serialBuf [20]byte
	serial := tmpl.SerialNumber.FillBytes(serialBuf[1:])
	for len(serial) > 1 && serial[0] == 0 {
		serial = serial[1:]
	}
	if serial[0]&0x80 != 0 { // positive INTEGER: leading zero byte
		serial = serialBuf[len(serialBuf)-len(serial)-1:]
	}
	var nbBuf, naBuf [15]byte
	nb, na := asn1Time(nbBuf[:0], tmpl.NotBefore), asn1Time(naBuf[:0], tmpl.NotAfter)
	uri := tmpl.URIs[0].String()
	aki := tmpl.AuthorityKeyId

	// Extension lengths, innermost first.
	sanSeq := tlvLen(len(uri))                                        // [6] uri
	sanExt := len(oidSANDER) + len(critTrue) + tlvLen(tlvLen(sanSeq)) // OID, critical, OCTET STRING { SEQUENCE { [6] } }
	exts := len(extFixed) + tlvLen(sanExt)
	akiSeq := tlvLen(len(aki)) // [0] ski
	akiExt := len(oidAKIDER) + tlvLen(tlvLen(akiSeq))
	if len(aki) > 0 {
		exts += tlvLen(akiExt)
	}
	validity := tlvLen(len(nb)) + tlvLen(len(na))
	body := len(tbsVersion) + tlvLen(len(serial)) + len(algECDSAWithSHA256) + len(issuer) + tlvLen(validity) +
		len(emptyName) + spkiLen + tlvLen(tlvLen(exts))

	b := make([]byte, 0, tlvLen(body))
	b = appendHdr(b, 0x30, body)
	b = append(b, tbsVersion...)
	b = appendHdr(b, 0x02, len(serial))
	b = append(b, serial...)
	b = append(b, algECDSAWithSHA256...)
	b = append(b, issuer...)
	b = appendHdr(b, 0x30, validity)
	b = appendHdr(b, timeTag(tmpl.NotBefore), len(nb))
	b = append(b, nb...)
	b = appendHdr(b, timeTag(tmpl.NotAfter), len(na))
	b = append(b, na...)
	b = append(b, emptyName...)
	if point != nil {
		b = append(b, p256SPKIPrefix...)
		b = append(b, point...)
	} else {
		b = append(b, spki...)
	}
	b = appendHdr(b, 0xa3, tlvLen(exts))
	b = appendHdr(b, 0x30, exts)
	b = append(b, extFixed...)
	if len(aki) > 0 {
		b = appendHdr(b, 0x30, akiExt)
		b = append(b, oidAKIDER...)
		b = appendHdr(b, 0x04, tlvLen(akiSeq))
		b = appendHdr(b, 0x30, akiSeq)
		b = appendHdr(b, 0x80, len(aki))
		b = append(b, aki...)
	}
	b = appendHdr(b, 0x30, sanExt)
	b = append(b, oidSANDER...)
	b = append(b, critTrue...)
	b = appendHdr(b, 0x04, tlvLen(sanSeq))
	b = appendHdr(b, 0x30, sanSeq)
	b = appendHdr(b, 0x86, len(uri))
	b = append(b, uri...)
	if len(b) != cap(b) {
		return nil, fmt.Errorf("tbs encoding: %d bytes written, %d computed", len(b), cap(b))
	}
	return b, nil
}

// DER pieces that never change.
var (
	tbsVersion         = []byte{0xa0, 0x03, 0x02, 0x01, 0x02} // [0] EXPLICIT INTEGER 2 (v3)
	emptyName          = []byte{0x30, 0x00}
	critTrue           = []byte{0x01, 0x01, 0xff}
	algECDSAWithSHA256 = mustDER(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidECDSAWithSHA256) })
	})
	oidAKIDER = mustDER(func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidExtAKI) })
	oidSANDER = mustDER(func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidExtSAN) })
	// p256SPKIPrefix is SubjectPublicKeyInfo { {id-ecPublicKey, prime256v1},
	// BIT STRING header } before the 65-byte uncompressed point.
	p256SPKIPrefix = []byte{0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
		0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00}
	// extFixed is keyUsage (critical, digitalSignature), extKeyUsage
	// (serverAuth, clientAuth) and basicConstraints (critical, CA:false).
	extFixed = mustDER(func(b *cryptobyte.Builder) {
		addExt(b, oidExtKeyUsage, true, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) { b.AddBytes([]byte{7, 0x80}) }) // 7 unused bits
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
	})
)

func mustDER(f func(*cryptobyte.Builder)) []byte {
	var b cryptobyte.Builder
	f(&b)
	return b.BytesOrPanic()
}

// tlvLen is the encoded size of a DER element with n content bytes.
func tlvLen(n int) int {
	switch {
	case n < 0x80:
		return 2 + n
	case n < 0x100:
		return 3 + n
	case n < 0x10000:
		return 4 + n
	default:
		return 5 + n
	}
}

// appendHdr appends a DER tag and the definite length n.
func appendHdr(b []byte, tag byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(b, tag, byte(n))
	case n < 0x100:
		return append(b, tag, 0x81, byte(n))
	case n < 0x10000:
		return append(b, tag, 0x82, byte(n>>8), byte(n))
	default:
		return append(b, tag, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
}

// asn1Time appends t's content as encoding/asn1 encodes it: UTCTime for
// 1950..2049, else GeneralizedTime (UTC, seconds, "Z").
func asn1Time(b []byte, t time.Time) []byte {
	if timeTag(t) == 0x17 {
		return t.UTC().AppendFormat(b, "060102150405Z0700")
	}
	return t.UTC().AppendFormat(b, "20060102150405Z0700")
}

func timeTag(t time.Time) byte {
	if y := t.UTC().Year(); y >= 1950 && y < 2050 {
		return 0x17 // UTCTime
	}
	return 0x18 // GeneralizedTime
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
