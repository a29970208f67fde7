package keys

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"time"

	"github.com/tier0-ca/tier0/api"
	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/signer"
	"github.com/tier0-ca/tier0/signer/soft"
)

// The api.CAManager side of the manager: `tier0 ca list|prepare|activate`.

var _ api.CAManager = (*Manager)(nil)

// SigningMode is Direct or Delegated for the active root.
func (m *Manager) SigningMode() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mode
}

// PrepareRoot opens and self-tests the new key, makes its root certificate
// and records it as prepared: from then on it is in the bundle every node
// serves, while the active root keeps signing. An empty keyURI makes a
// DEV-ONLY soft key in the data dir; ttl 0 is Settings.RootTTL.
func (m *Manager) PrepareRoot(ctx context.Context, keyURI string, ttl time.Duration) (ha.CARoot, error) {
	if ttl == 0 {
		ttl = m.cfg.RootTTL
	}
	if ttl < 24*time.Hour {
		return ha.CARoot{}, fmt.Errorf("keys: root lifetime %v is below 24h: %w", ttl, api.ErrCAKey)
	}
	if keyURI == "" {
		if err := m.refuseSoftKeyInCluster(); err != nil {
			return ha.CARoot{}, err
		}
		var b [6]byte
		_, _ = rand.Read(b[:])
		rel := filepath.Join("ca", "root-"+hex.EncodeToString(b[:])+".key")
		m.log.Warn("DEV-ONLY: generating a software root key on disk for `tier0 ca prepare`", "path", filepath.Join(m.cfg.DataDir, rel))
		if err := soft.Generate(filepath.Join(m.cfg.DataDir, rel)); err != nil {
			return ha.CARoot{}, fmt.Errorf("keys: generate soft root key: %w", err)
		}
		keyURI = "soft:" + rel
	}
	s, err := m.open(ctx, keyURI)
	if err != nil {
		return ha.CARoot{}, fmt.Errorf("%w: %w", api.ErrCAKey, err)
	}
	if _, err := signer.SelfTest(ctx, s); err != nil {
		return ha.CARoot{}, fmt.Errorf("keys: %w: %w", api.ErrCAKey, err)
	}
	cert, err := ca.NewRoot(m.cfg.TrustDomain, s, ttl, time.Now())
	if err != nil {
		return ha.CARoot{}, fmt.Errorf("keys: %w: %w", api.ErrCAKey, err)
	}
	r, err := m.cfg.State.AddCARoot(ctx, m.cfg.TrustDomain.Name(), ha.CARoot{
		ID: rootID(cert), State: ha.RootPrepared, KeyURI: keyURI, KeyID: s.KeyID(), CertDER: cert.Raw, NotAfter: cert.NotAfter,
	})
	if err != nil {
		return ha.CARoot{}, err
	}
	m.Kick() // rewrite DATA/bundle.pem now
	return r, nil
}

// ActivateRoot refuses a root this node cannot sign with, one some voter
// has not reported it can sign with, and one published for less than the
// publish window unless force (then it returns a warning); then it
// activates it in raft state; every node switches at its next reconcile
// (this one now).
func (m *Manager) ActivateRoot(ctx context.Context, id string, force bool) (ha.CARoot, string, error) {
	r, ok := m.cfg.State.CAState().Root(id)
	if !ok {
		return ha.CARoot{}, "", fmt.Errorf("keys: activate root %q: %w", id, ha.ErrNotFound)
	}
	s, err := m.open(ctx, r.KeyURI)
	if err != nil {
		return ha.CARoot{}, "", fmt.Errorf("%w: %w", api.ErrCAKey, err)
	}
	if _, err := signer.SelfTest(ctx, s); err != nil {
		return ha.CARoot{}, "", fmt.Errorf("keys: %w: %w", api.ErrCAKey, err)
	}
	warning, err := m.gateActivation(id, force)
	if err != nil {
		return ha.CARoot{}, "", err
	}
	r, err = m.cfg.State.ActivateCARoot(ctx, id)
	if err != nil {
		return ha.CARoot{}, "", err
	}
	m.Kick()
	return r, warning, nil
}
