// Package soft is a signer over a PKCS#8 PEM private key file. It is for
// development and tests only: the key is in process memory and on disk.
package soft

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/tier0-ca/tier0/signer/internal/errs"
	"github.com/tier0-ca/tier0/signer/internal/health"
)

// Signer signs with an in-memory ECDSA or RSA key.
type Signer struct {
	key    crypto.Signer
	id     string
	closed atomic.Bool
}

// Open loads a PKCS#8 PEM key ("PRIVATE KEY" block). The file must not be
// readable or writable by group or others (0600 or stricter).
func Open(path string) (*Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("signer/soft: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("signer/soft: key file %s has mode %04o; it must be 0600 or stricter", path, perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signer/soft: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signer/soft: %s: no PKCS#8 \"PRIVATE KEY\" PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signer/soft: %s: %w", path, err)
	}
	switch k := k.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey:
		return &Signer{key: k.(crypto.Signer), id: "soft:" + path}, nil
	default:
		return nil, fmt.Errorf("signer/soft: %s: unsupported key type %T (want ECDSA or RSA)", path, k)
	}
}

// Generate writes a new P-256 key to path as PKCS#8 PEM with mode 0600. It
// refuses to overwrite an existing file.
func Generate(path string) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("signer/soft: generate: %w", err)
	}
	return WriteKey(path, k)
}

// WriteKey writes k to a new file at path as PKCS#8 PEM with mode 0600.
func WriteKey(path string, k crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return fmt.Errorf("signer/soft: marshal key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("signer/soft: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return fmt.Errorf("signer/soft: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("signer/soft: write %s: %w", path, err)
	}
	return nil
}

// Public returns the public key.
func (s *Signer) Public() crypto.PublicKey { return s.key.Public() }

// Health is always Up: the key is in memory.
func (s *Signer) Health() health.Health { return health.Health{State: health.Up} }

// KeyID returns "soft:" and the key file path.
func (s *Signer) KeyID() string { return s.id }

// Sign signs digest; rand is ignored in favour of crypto/rand.
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.SignContext(context.Background(), digest, opts)
}

// SignContext signs digest unless ctx is already done.
func (s *Signer) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if s.closed.Load() {
		return nil, errs.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("signer/soft: %w", err)
	}
	if opts == nil {
		return nil, errors.New("signer/soft: nil SignerOpts")
	}
	if h := opts.HashFunc(); h != 0 && len(digest) != h.Size() {
		return nil, fmt.Errorf("signer/soft: digest is %d bytes, %v needs %d", len(digest), h, h.Size())
	}
	sig, err := s.key.Sign(rand.Reader, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("signer/soft: %w", err)
	}
	return sig, nil
}

// Close makes later Sign calls fail with ErrClosed.
func (s *Signer) Close() error {
	s.closed.Store(true)
	return nil
}
