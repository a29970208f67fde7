package tlog

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/tier0-ca/tier0/ca/record"
)

// Checkpoint is the body of a C2SP tlog-checkpoint: the log's origin, the
// tree size and the root hash.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   Hash
}

// Origin returns the origin line of the tier0 log of a trust domain.
func Origin(trustDomain string) string { return "tier0/" + trustDomain }

// Body returns the checkpoint text: origin, size and base64 root, each
// on its own line.
func (c Checkpoint) Body() string {
	return fmt.Sprintf("%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
}

// ParseCheckpoint reads a checkpoint body (extension lines are ignored).
func ParseCheckpoint(text string) (Checkpoint, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 || lines[0] == "" {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint: want origin, size and root lines", ErrTree)
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint: bad tree size %q", ErrTree, lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != len(Hash{}) {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint: bad root hash %q", ErrTree, lines[2])
	}
	c := Checkpoint{Origin: lines[0], Size: n}
	copy(c.Root[:], root)
	return c, nil
}

// sigTypeECDSA is the signed-note signature type of tier0 audit keys
// (ECDSA P-256 over SHA-256 of the note text, ASN.1 signature): C2SP
// registers Ed25519 types only, so this uses the 0xff "unregistered"
// type followed by an identifier.
var sigTypeECDSA = append([]byte{0xff}, "tier0-ecdsa-sha256"...)

// keyHash is the signed-note key ID: the first 4 bytes of
// SHA-256(name || "\n" || type || SubjectPublicKeyInfo).
func keyHash(name string, spki []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write(sigTypeECDSA)
	h.Write(spki)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// signer is a note.Signer over an ECDSA audit key.
type signer struct {
	name string
	hash uint32
	s    crypto.Signer
}

func (s *signer) Name() string    { return s.name }
func (s *signer) KeyHash() uint32 { return s.hash }
func (s *signer) Sign(msg []byte) ([]byte, error) {
	d := sha256.Sum256(msg)
	return s.s.Sign(rand.Reader, d[:], crypto.SHA256)
}

// verifier is a note.Verifier over an audit key certificate's key.
type verifier struct {
	name string
	hash uint32
	pub  *ecdsa.PublicKey
}

func (v *verifier) Name() string    { return v.name }
func (v *verifier) KeyHash() uint32 { return v.hash }
func (v *verifier) Verify(msg, sig []byte) bool {
	d := sha256.Sum256(msg)
	return ecdsa.VerifyASN1(v.pub, d[:], sig)
}

// Sign returns the signed note of c, signed by the audit key k whose
// certificate is certDER; the key name is the origin.
func Sign(c Checkpoint, k crypto.Signer, certDER []byte) ([]byte, error) {
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("tlog: sign: audit key certificate: %w", err)
	}
	if _, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok {
		return nil, fmt.Errorf("tlog: sign: audit key is %T; tree checkpoints need an ECDSA audit key", cert.PublicKey)
	}
	s := &signer{name: c.Origin, hash: keyHash(c.Origin, cert.RawSubjectPublicKeyInfo), s: k}
	msg, err := note.Sign(&note.Note{Text: c.Body()}, s)
	if err != nil {
		return nil, fmt.Errorf("tlog: sign checkpoint %d: %w", c.Size, err)
	}
	return msg, nil
}

// ErrSignature is wrapped when a checkpoint's signature or audit key
// certificate does not verify.
var ErrSignature = errors.New("tlog: checkpoint signature")

// Open verifies a signed checkpoint note against the audit key certificate
// certDER, which must be an audit key certificate (record.CheckpointEKU)
// that chains to roots (at its own NotBefore: the note has no time), and
// returns the checkpoint.
func Open(msg, certDER []byte, roots []*x509.Certificate) (Checkpoint, error) {
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: audit key certificate: %w", ErrSignature, err)
	}
	if !slices.ContainsFunc(cert.UnknownExtKeyUsage, func(o asn1.ObjectIdentifier) bool { return o.Equal(record.CheckpointEKU) }) {
		return Checkpoint{}, fmt.Errorf("%w: certificate %q is not an audit key certificate", ErrSignature, cert.Subject.CommonName)
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: cert.NotBefore.Add(time.Second),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return Checkpoint{}, fmt.Errorf("%w: audit key certificate does not chain to the bundle: %w", ErrSignature, err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return Checkpoint{}, fmt.Errorf("%w: audit key is %T, want ECDSA", ErrSignature, cert.PublicKey)
	}
	origin, _, _ := bytes.Cut(msg, []byte("\n"))
	v := &verifier{name: string(origin), hash: keyHash(string(origin), cert.RawSubjectPublicKeyInfo), pub: pub}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %w", ErrSignature, err)
	}
	return ParseCheckpoint(n.Text)
}
