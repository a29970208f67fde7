package keys

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/signer"
	"github.com/tier0-ca/tier0/signer/soft"
)

// DevAuditKeyURI is the audit key when none is configured (DEV-ONLY),
// relative to the data dir.
const DevAuditKeyURI = "soft:ca/audit.key"

// AuditKey is the checkpoint signing key and its certificate, re-issued by
// the active CA root when the root changes.
type AuditKey struct {
	signer  signer.Signer
	m       *Manager
	certTTL time.Duration

	mu     sync.Mutex
	rootID string
	cert   []byte
}

// OpenAuditKey opens the audit key named by uri ("": DevAuditKeyURI,
// generated on first use) and issues its certificate (lifetime certTTL,
// capped at the root's) from the active root.
func (m *Manager) OpenAuditKey(ctx context.Context, uri string, certTTL time.Duration) (*AuditKey, error) {
	if uri == "" {
		uri = DevAuditKeyURI
		path := filepath.Join(m.cfg.DataDir, "ca", "audit.key")
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			m.log.Warn("DEV-ONLY: generating a software audit key on disk; use an HSM or KMS key (--audit-key) in production", "path", path)
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return nil, fmt.Errorf("audit key: %w", err)
			}
			if err := soft.Generate(path); err != nil {
				return nil, fmt.Errorf("audit key: generate: %w", err)
			}
		}
	}
	s, err := signer.Open(ctx, resolveURI(m.cfg.DataDir, uri), signer.Options{Logger: m.log})
	if err != nil {
		return nil, fmt.Errorf("audit key: open: %w", err)
	}
	k := &AuditKey{signer: s, m: m, certTTL: certTTL}
	if _, err := k.refresh(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return k, nil
}

// NotAfter is the end of the audit key certificate's validity.
func (k *AuditKey) NotAfter() time.Time {
	k.mu.Lock()
	der := k.cert
	k.mu.Unlock()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return time.Time{}
	}
	return c.NotAfter
}

// Signer is the audit key.
func (k *AuditKey) Signer() crypto.Signer { return k.signer }

// KeyID names the audit key in logs.
func (k *AuditKey) KeyID() string { return k.signer.KeyID() }

// Close closes the key.
func (k *AuditKey) Close() error { return k.signer.Close() }

// CertDER returns the certificate, re-issuing it after a root change (a
// failure is logged and the previous certificate returned).
func (k *AuditKey) CertDER() []byte {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	der, err := k.refresh(ctx)
	if err != nil {
		k.m.log.Error("audit key: re-issue certificate", "err", err)
	}
	return der
}

func (k *AuditKey) refresh(ctx context.Context) ([]byte, error) {
	root, ok := k.m.cfg.State.CAState().Active()
	if !ok {
		return nil, errors.New("audit key: no active CA root")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if root.ID == k.rootID && k.cert != nil {
		return k.cert, nil
	}
	rs, err := k.m.open(ctx, root.KeyURI)
	if err != nil {
		return k.cert, fmt.Errorf("audit key: root key: %w", err)
	}
	rc, err := x509.ParseCertificate(root.CertDER)
	if err != nil {
		return k.cert, fmt.Errorf("audit key: root %s: %w", root.ID, err)
	}
	cert, err := ca.NewAuditKeyCert(k.m.cfg.TrustDomain, ca.Issuer{Signer: rs, Cert: rc}, k.signer.Public(), k.certTTL, time.Now())
	if err != nil {
		return k.cert, fmt.Errorf("audit key: certificate: %w", err)
	}
	k.rootID, k.cert = root.ID, cert.Raw
	k.m.recordAuditCert(cert) // audit_record.go
	return k.cert, nil
}
