package pkcs11

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	p11 "github.com/miekg/pkcs11"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// keyTemplate is the URI's object selection (label and/or id).
func (s *Signer) keyTemplate(class uint, withClass bool) []*p11.Attribute {
	var t []*p11.Attribute
	if withClass {
		t = append(t, p11.NewAttribute(p11.CKA_CLASS, class))
	}
	if s.uri.Object != "" {
		t = append(t, p11.NewAttribute(p11.CKA_LABEL, s.uri.Object))
	}
	if s.uri.ID != nil {
		t = append(t, p11.NewAttribute(p11.CKA_ID, s.uri.ID))
	}
	return t
}

func (s *Signer) find(h p11.SessionHandle, tmpl []*p11.Attribute) ([]p11.ObjectHandle, error) {
	c := s.p11
	if err := c.FindObjectsInit(h, tmpl); err != nil {
		return nil, fmt.Errorf("signer/pkcs11: C_FindObjectsInit: %w", err)
	}
	objs, _, err := c.FindObjects(h, 2)
	if ferr := c.FindObjectsFinal(h); err == nil && ferr != nil {
		err = ferr
	}
	if err != nil {
		return nil, fmt.Errorf("signer/pkcs11: C_FindObjects: %w", err)
	}
	return objs, nil
}

var classNames = map[uint]string{
	p11.CKO_DATA:        "a data object",
	p11.CKO_CERTIFICATE: "a certificate",
	p11.CKO_PUBLIC_KEY:  "a public key",
	p11.CKO_PRIVATE_KEY: "a private key",
	p11.CKO_SECRET_KEY:  "a secret (symmetric) key",
}

// findPrivateKey finds the one private key the URI names, explaining what
// it found instead when it is not exactly one private key.
func (s *Signer) findPrivateKey(h p11.SessionHandle) (p11.ObjectHandle, error) {
	// CKA_TOKEN: not our own (or another signer's) session copy of the key.
	objs, err := s.find(h, append(s.keyTemplate(p11.CKO_PRIVATE_KEY, true), p11.NewAttribute(p11.CKA_TOKEN, true)))
	if err != nil {
		return 0, err
	}
	switch len(objs) {
	case 1:
		return objs[0], nil
	case 2:
		return 0, fmt.Errorf("signer/pkcs11: %s matches more than one private key; add id= or object=", s.uri)
	}
	others, err := s.find(h, s.keyTemplate(0, false))
	if err != nil {
		return 0, err
	}
	if len(others) > 0 {
		what := "an object of another class"
		if attrs, err := s.p11.GetAttributeValue(h, others[0], []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, nil)}); err == nil {
			if n, ok := classNames[bytesToUint(attrs[0].Value)]; ok {
				what = n
			}
		}
		return 0, fmt.Errorf("signer/pkcs11: %s is %s, not a private key", s.uri, what)
	}
	return 0, fmt.Errorf("signer/pkcs11: no private key matching %s on the token", s.uri)
}

// loadKey finds the key, checks its type and reads its public key.
func (s *Signer) loadKey(h p11.SessionHandle) (p11.ObjectHandle, error) {
	key, err := s.findPrivateKey(h)
	if err != nil {
		return 0, err
	}
	c := s.p11
	attrs, err := c.GetAttributeValue(h, key, []*p11.Attribute{p11.NewAttribute(p11.CKA_KEY_TYPE, nil)})
	if err != nil {
		return 0, fmt.Errorf("signer/pkcs11: read CKA_KEY_TYPE of %s: %w", s.uri, err)
	}
	s.keyType = bytesToUint(attrs[0].Value)
	switch s.keyType {
	case p11.CKK_EC:
		s.pub, err = s.ecPublicKey(h, key)
	case p11.CKK_RSA:
		s.pub, err = s.rsaPublicKey(h, key)
	default:
		err = fmt.Errorf("signer/pkcs11: %s has key type 0x%x; only EC (P-256, P-384) and RSA keys can sign", s.uri, s.keyType)
	}
	if err != nil {
		return 0, err
	}
	return key, nil
}

func (s *Signer) rsaPublicKey(h p11.SessionHandle, key p11.ObjectHandle) (crypto.PublicKey, error) {
	attrs, err := s.p11.GetAttributeValue(h, key, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_MODULUS, nil),
		p11.NewAttribute(p11.CKA_PUBLIC_EXPONENT, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("signer/pkcs11: read RSA public key of %s: %w", s.uri, err)
	}
	n := new(big.Int).SetBytes(attrs[0].Value)
	e := new(big.Int).SetBytes(attrs[1].Value)
	if n.BitLen() < 2048 || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
		return nil, fmt.Errorf("signer/pkcs11: %s: RSA key of %d bits (exponent %s) is not acceptable; want >= 2048 bits", s.uri, n.BitLen(), e)
	}
	return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
}

var (
	oidP256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384 = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
)

func (s *Signer) ecPublicKey(h p11.SessionHandle, key p11.ObjectHandle) (crypto.PublicKey, error) {
	c := s.p11
	// The EC point lives on the public key object with the same label/id.
	pubs, err := s.find(h, s.keyTemplate(p11.CKO_PUBLIC_KEY, true))
	if err != nil {
		return nil, err
	}
	if len(pubs) != 1 {
		return nil, fmt.Errorf("signer/pkcs11: %s: found %d public key objects with the same label/id; need exactly one to read the EC point", s.uri, len(pubs))
	}
	attrs, err := c.GetAttributeValue(h, pubs[0], []*p11.Attribute{
		p11.NewAttribute(p11.CKA_EC_PARAMS, nil),
		p11.NewAttribute(p11.CKA_EC_POINT, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("signer/pkcs11: read EC public key of %s: %w", s.uri, err)
	}
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(attrs[0].Value, &oid); err != nil {
		return nil, fmt.Errorf("signer/pkcs11: %s: CKA_EC_PARAMS is not a named curve: %w", s.uri, err)
	}
	var curve elliptic.Curve
	switch {
	case oid.Equal(oidP256):
		curve = elliptic.P256()
	case oid.Equal(oidP384):
		curve = elliptic.P384()
	default:
		return nil, fmt.Errorf("signer/pkcs11: %s: unsupported EC curve %s (want P-256 or P-384)", s.uri, oid)
	}
	point := attrs[1].Value
	// CKA_EC_POINT is a DER OCTET STRING; a few modules return it raw.
	var inner []byte
	if rest, err := asn1.Unmarshal(point, &inner); err == nil && len(rest) == 0 {
		point = inner
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return nil, fmt.Errorf("signer/pkcs11: %s: bad CKA_EC_POINT: %w", s.uri, err)
	}
	return pub, nil
}

// bytesToUint decodes a CK_ULONG attribute (host byte order).
func bytesToUint(b []byte) uint {
	switch len(b) {
	case 8:
		return uint(binary.NativeEndian.Uint64(b))
	case 4:
		return uint(binary.NativeEndian.Uint32(b))
	}
	return ^uint(0)
}

// DigestInfo prefixes for PKCS #1 v1.5 (RFC 8017 section 9.2, note 1).
var digestInfo = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

var pssHash = map[crypto.Hash][2]uint{
	crypto.SHA256: {p11.CKM_SHA256, p11.CKG_MGF1_SHA256},
	crypto.SHA384: {p11.CKM_SHA384, p11.CKG_MGF1_SHA384},
	crypto.SHA512: {p11.CKM_SHA512, p11.CKG_MGF1_SHA512},
}

// mechanism returns the PKCS#11 mechanism and the data to sign.
func (s *Signer) mechanism(digest []byte, opts crypto.SignerOpts) ([]*p11.Mechanism, []byte, error) {
	if opts == nil {
		return nil, nil, errors.New("signer/pkcs11: nil SignerOpts")
	}
	hash := opts.HashFunc()
	if hash != 0 && len(digest) != hash.Size() {
		return nil, nil, fmt.Errorf("signer/pkcs11: digest is %d bytes, %v needs %d", len(digest), hash, hash.Size())
	}
	switch s.keyType {
	case p11.CKK_EC:
		if hash == 0 {
			return nil, nil, errors.New("signer/pkcs11: ECDSA needs a hash in SignerOpts")
		}
		return []*p11.Mechanism{p11.NewMechanism(p11.CKM_ECDSA, nil)}, digest, nil
	case p11.CKK_RSA:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			h, ok := pssHash[hash]
			if !ok {
				return nil, nil, fmt.Errorf("signer/pkcs11: RSA-PSS with %v is not supported (want SHA-256/384/512)", hash)
			}
			salt := pss.SaltLength
			if salt == rsa.PSSSaltLengthAuto || salt == rsa.PSSSaltLengthEqualsHash {
				salt = hash.Size()
			}
			if salt < 0 {
				return nil, nil, fmt.Errorf("signer/pkcs11: bad PSS salt length %d", pss.SaltLength)
			}
			params := p11.NewPSSParams(h[0], h[1], uint(salt))
			return []*p11.Mechanism{p11.NewMechanism(p11.CKM_RSA_PKCS_PSS, params)}, digest, nil
		}
		var data []byte
		if hash != 0 {
			prefix, ok := digestInfo[hash]
			if !ok {
				return nil, nil, fmt.Errorf("signer/pkcs11: RSA PKCS #1 v1.5 with %v is not supported (want SHA-256/384/512)", hash)
			}
			data = append(append(data, prefix...), digest...)
		} else {
			data = append(data, digest...)
		}
		return []*p11.Mechanism{p11.NewMechanism(p11.CKM_RSA_PKCS, nil)}, data, nil
	}
	return nil, nil, fmt.Errorf("signer/pkcs11: unsupported key type 0x%x", s.keyType)
}

// encode turns a raw CKM_ECDSA signature into ASN.1 DER; RSA passes through.
func (s *Signer) encode(sig []byte) ([]byte, error) {
	if s.keyType != p11.CKK_EC {
		return sig, nil
	}
	return ecdsaDER(sig)
}

// ecdsaDER converts a PKCS#11 r||s signature (two equal-length big-endian
// integers) into the ASN.1 DER ECDSA-Sig-Value that x509 and
// ecdsa.VerifyASN1 expect: each INTEGER loses its leading zero bytes and
// gains a 0x00 when its high bit is set, as DER requires.
func ecdsaDER(raw []byte) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 {
		return nil, fmt.Errorf("signer/pkcs11: ECDSA signature of %d bytes is not r||s", len(raw))
	}
	n := len(raw) / 2
	r, sv := trimZeros(raw[:n]), trimZeros(raw[n:])
	if len(r) == 0 || len(sv) == 0 {
		return nil, errors.New("signer/pkcs11: ECDSA signature has a zero r or s")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		addASN1Unsigned(b, r)
		addASN1Unsigned(b, sv)
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("signer/pkcs11: encode ECDSA signature: %w", err)
	}
	return der, nil
}

func trimZeros(v []byte) []byte {
	for len(v) > 0 && v[0] == 0 {
		v = v[1:]
	}
	return v
}

// addASN1Unsigned adds a positive INTEGER from its minimal big-endian bytes.
func addASN1Unsigned(b *cryptobyte.Builder, v []byte) {
	b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) {
		if v[0]&0x80 != 0 {
			b.AddUint8(0)
		}
		b.AddBytes(v)
	})
}
