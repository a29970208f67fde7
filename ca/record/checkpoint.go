package record

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"time"
)

// A Checkpoint is a signed statement "the journal's hash chain head at Seq
// is Head", made by the leader with the CA's audit key. CertDER is the audit
// key's certificate, signed by a CA root: a verifier needs only the trust
// bundle (the roots) to check a checkpoint, and a checkpoint pins the chain
// up to Seq so that a consistent rewrite of records, or records removed at
// the end, are detected (the chain alone cannot see them).
type Checkpoint struct {
	Seq       uint64    `json:"seq"`
	Head      []byte    `json:"head"`      // Hash of record Seq
	SignedAt  time.Time `json:"signed_at"` // leader's clock, microseconds, UTC
	NodeID    string    `json:"node"`      // the leader that signed it
	CertDER   []byte    `json:"cert"`      // audit key certificate (CheckpointEKU), issued by a CA root
	Signature []byte    `json:"sig"`       // over Message()
	// Prev is the seq of the checkpoint before this one (0: none), signed
	// with it: the checkpoints form a chain, so a deleted checkpoint is
	// seen at the next one. nil on checkpoints signed before the link
	// existed (message v1).
	Prev *uint64 `json:"prev,omitempty"`
}

// CheckpointEKU is the extended key usage of an audit key certificate
// (a tier0-private OID). Such a certificate has no URI SAN, so it is no
// X509-SVID and cannot authenticate anyone; it can only sign checkpoints.
var CheckpointEKU = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 59999, 7, 1}

// ErrCheckpoint is wrapped by checkpoint verification errors.
var ErrCheckpoint = errors.New("record: bad checkpoint")

const (
	checkpointDomainV1 = "tier0 audit checkpoint v1\x00"
	checkpointDomain   = "tier0 audit checkpoint v2\x00"
)

// Message returns the signed bytes: a domain string, then seq, head, the
// signing time (unix microseconds), the node ID, length-prefixed, and the
// previous checkpoint's seq (v2; a v1 checkpoint has no Prev).
func (c *Checkpoint) Message() []byte {
	var b bytes.Buffer
	if c.Prev == nil {
		b.WriteString(checkpointDomainV1)
	} else {
		b.WriteString(checkpointDomain)
	}
	putU64(&b, c.Seq)
	putBytes(&b, c.Head)
	putU64(&b, uint64(Truncate(c.SignedAt).UnixMicro()))
	putStr(&b, c.NodeID)
	if c.Prev != nil {
		putU64(&b, *c.Prev)
	}
	return b.Bytes()
}

// Sign signs c with s (ECDSA and RSA over SHA-256, Ed25519 over the message).
func (c *Checkpoint) Sign(s crypto.Signer) error {
	c.SignedAt = Truncate(c.SignedAt)
	sig, err := signMessage(s, c.Message())
	if err != nil {
		return fmt.Errorf("record: sign checkpoint %d: %w", c.Seq, err)
	}
	c.Signature = sig
	return nil
}

// signMessage signs msg with s: ECDSA and RSA over SHA-256, Ed25519 over
// msg itself.
func signMessage(s crypto.Signer, msg []byte) ([]byte, error) {
	if _, ok := s.Public().(ed25519.PublicKey); ok {
		return s.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	d := sha256.Sum256(msg)
	return s.Sign(rand.Reader, d[:], crypto.SHA256)
}

// Verify checks that c's certificate is an audit key certificate issued by
// one of roots and valid at SignedAt, and that the signature is right. The
// error names what is wrong and wraps ErrCheckpoint.
func (c *Checkpoint) Verify(roots []*x509.Certificate) error {
	if len(c.Head) != HashSize {
		return fmt.Errorf("%w: seq %d: head is %d bytes, want %d", ErrCheckpoint, c.Seq, len(c.Head), HashSize)
	}
	if err := verifySigned(c.CertDER, c.SignedAt, c.Message(), c.Signature, roots); err != nil {
		return fmt.Errorf("%w: seq %d: %w", ErrCheckpoint, c.Seq, err)
	}
	return nil
}

// errBadSignature is verifySigned's error for a signature that does not
// verify.
var errBadSignature = errors.New("signature does not verify (head, seq or time edited, or forged)")

// verifySigned checks that certDER is an audit key certificate issued by
// one of roots and valid at signedAt, and that sig is its signature of msg.
func verifySigned(certDER []byte, signedAt time.Time, msg, sig []byte, roots []*x509.Certificate) error {
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return fmt.Errorf("audit key certificate: %w", err)
	}
	if !slices.ContainsFunc(cert.UnknownExtKeyUsage, func(o asn1.ObjectIdentifier) bool { return o.Equal(CheckpointEKU) }) {
		return fmt.Errorf("certificate %q is not an audit key certificate", cert.Subject.CommonName)
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots: pool, CurrentTime: signedAt, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return fmt.Errorf("audit key certificate does not chain to the bundle at %s: %w", signedAt.Format(time.RFC3339), err)
	}
	d := sha256.Sum256(msg)
	ok := false
	switch pub := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(pub, d[:], sig)
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig) == nil ||
			rsa.VerifyPSS(pub, crypto.SHA256, d[:], sig, nil) == nil
	case ed25519.PublicKey:
		ok = ed25519.Verify(pub, msg, sig)
	}
	if !ok {
		return errBadSignature
	}
	return nil
}
