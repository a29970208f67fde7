package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca"
)

// Dev (soft key) CA material in DATA/ca: a root and an issuing
// intermediate, each a P-256 key in a 0600 PKCS#8 file. Production names an
// HSM/KMS key instead; these files exist only on the embedded default.
const (
	rootLifetime       = 365 * 24 * time.Hour
	issuingLifetime    = 30 * 24 * time.Hour
	issuingRenewBefore = 7 * 24 * time.Hour
)

type caMaterial struct {
	root    *x509.Certificate
	issuer  ca.Issuer
	created bool
}

func loadOrCreateSoftCA(dir string, td spiffeid.TrustDomain, log *slog.Logger) (*caMaterial, error) {
	cadir := filepath.Join(dir, "ca")
	if err := os.MkdirAll(cadir, 0o700); err != nil {
		return nil, fmt.Errorf("ca dir: %w", err)
	}
	now := time.Now()
	m := &caMaterial{}
	rootKey, root, err := loadPair(cadir, "root")
	switch {
	case errors.Is(err, fs.ErrNotExist):
		log.Warn("DEV-ONLY: generating a software root key on disk; use an HSM or KMS key in production", "dir", cadir)
		rootKey, err = newKey()
		if err != nil {
			return nil, err
		}
		root, err = ca.NewRoot(td, rootKey, rootLifetime, now)
		if err != nil {
			return nil, err
		}
		if err := savePair(cadir, "root", rootKey, root); err != nil {
			return nil, err
		}
		m.created = true
	case err != nil:
		return nil, err
	default:
		log.Warn("DEV-ONLY: using a software root key from disk", "dir", cadir)
	}
	if err := checkTrustDomain(root, td); err != nil {
		return nil, err
	}
	m.root = root
	rootIss := ca.Issuer{Signer: rootKey, Cert: root}

	key, cert, err := loadPair(cadir, "issuing")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err != nil || cert.NotAfter.Sub(now) < issuingRenewBefore || !issuedBy(cert, root) {
		key, err = newKey()
		if err != nil {
			return nil, err
		}
		cert, err = ca.NewIntermediate(td, rootIss, key.Public(), issuingLifetime, now)
		if err != nil {
			return nil, err
		}
		if err := savePair(cadir, "issuing", key, cert); err != nil {
			return nil, err
		}
		log.Info("new issuing intermediate", "not_after", cert.NotAfter)
	}
	m.issuer = ca.Issuer{Signer: key, Cert: cert, Chain: []*x509.Certificate{cert}}
	return m, nil
}

func checkTrustDomain(root *x509.Certificate, td spiffeid.TrustDomain) error {
	for _, u := range root.URIs {
		if id, err := spiffeid.FromURI(u); err == nil && id.TrustDomain() == td {
			return nil
		}
	}
	return fmt.Errorf("the CA in this data dir is not for trust domain %q: use its trust domain or a new --data-dir", td)
}

func issuedBy(c, root *x509.Certificate) bool { return c.CheckSignatureFrom(root) == nil }

func newKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

func loadPair(dir, name string) (crypto.Signer, *x509.Certificate, error) {
	keyPEM, err := os.ReadFile(filepath.Join(dir, name+".key"))
	if err != nil {
		return nil, nil, err
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, name+".crt"))
	if err != nil {
		return nil, nil, err
	}
	kb, _ := pem.Decode(keyPEM)
	cb, _ := pem.Decode(certPEM)
	if kb == nil || cb == nil {
		return nil, nil, fmt.Errorf("%s: not PEM", name)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s key: %w", name, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%s key: not a signer", name)
	}
	c, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s cert: %w", name, err)
	}
	return s, c, nil
}

func savePair(dir, name string, key crypto.Signer, cert *x509.Certificate) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("%s key: %w", name, err)
	}
	if err := writeFileAtomic(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644)
}

// writeFileAtomic writes via a temp file, fsync and rename.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func pemCerts(certs ...[]byte) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	return out
}
