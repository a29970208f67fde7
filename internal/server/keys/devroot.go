package keys

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/signer/soft"
)

// The dev (soft key) root lives in DATA/ca/root.key (0600 PKCS#8). It is
// the embedded default when no --signer is given: production names an HSM
// or KMS key instead. Its certificate is raft state (the CA roots and the
// bundle); DATA/ca/root.crt is only read to adopt a data dir made before CA
// roots were raft state.
const DevRootURI = "soft:ca/root.key" // relative to the data dir

// ensureDevRootKey creates DATA/ca/root.key when missing and returns the
// certificate of an older data dir (nil when there is none).
func ensureDevRootKey(dir string, log *slog.Logger) (*x509.Certificate, error) {
	cadir := filepath.Join(dir, "ca")
	if err := os.MkdirAll(cadir, 0o700); err != nil {
		return nil, fmt.Errorf("keys: ca dir: %w", err)
	}
	keyPath := filepath.Join(cadir, "root.key")
	switch _, err := os.Stat(keyPath); {
	case errors.Is(err, fs.ErrNotExist):
		log.Warn("DEV-ONLY: generating a software root key on disk; use an HSM or KMS key (--signer) in production", "path", keyPath)
		if err := soft.Generate(keyPath); err != nil {
			return nil, fmt.Errorf("keys: generate dev root key: %w", err)
		}
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("keys: %w", err)
	}
	log.Warn("DEV-ONLY: using a software root key from disk", "path", keyPath)
	raw, err := os.ReadFile(filepath.Join(cadir, "root.crt"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	b, _ := pem.Decode(raw)
	if b == nil {
		return nil, fmt.Errorf("keys: %s: not PEM", filepath.Join(cadir, "root.crt"))
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("keys: root.crt: %w", err)
	}
	return cert, nil
}

func checkTrustDomain(root *x509.Certificate, td spiffeid.TrustDomain) error {
	for _, u := range root.URIs {
		if id, err := spiffeid.FromURI(u); err == nil && id.TrustDomain() == td {
			return nil
		}
	}
	return fmt.Errorf("keys: the CA in this data dir is not for trust domain %q: use its trust domain or a new --data-dir", td)
}
