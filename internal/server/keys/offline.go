package keys

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/signer"
)

// Offline issuance: a cluster member whose node SVID expired while it was
// down (a full stop longer than half the SVID's life) cannot reach its
// peers, and the cluster is what renews node SVIDs. Every member opens the
// same CA root key (the URI in raft state: an HSM or KMS key, or the dev
// soft key copied to each node), so it re-issues its own node SVID from
// that key before it joins raft, signed directly by the root (the root is
// in every member's bundle). The record cannot be committed without a
// leader: the caller keeps it durably and commits it once there is one
// (internal/server, noderecover.go).

// OfflineConfig names the SVID to issue and the root to issue it from.
type OfflineConfig struct {
	TrustDomain spiffeid.TrustDomain
	DataDir     string // relative soft: key URIs are inside it
	Root        ha.CARoot
	ID          spiffeid.ID
	TTL         time.Duration
	NodeID      string        // recorded as the signing node
	Timeout     time.Duration // one signature; default DefaultSignerTimeout
}

// IssueOffline opens cfg.Root's key, checks it against the root
// certificate and issues one SVID for cfg.ID with a new P-256 key. The
// returned record is not committed (Seq and the hashes are unset).
func IssueOffline(ctx context.Context, cfg OfflineConfig) (*x509svid.SVID, *record.Record, error) {
	if cfg.Root.KeyURI == "" || len(cfg.Root.CertDER) == 0 || cfg.ID.IsZero() || cfg.NodeID == "" {
		return nil, nil, errors.New("keys: offline issue: root key URI and certificate, SPIFFE ID and node ID are required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultSignerTimeout
	}
	cert, err := x509.ParseCertificate(cfg.Root.CertDER)
	if err != nil {
		return nil, nil, fmt.Errorf("keys: offline issue: root %s: %w", cfg.Root.ID, err)
	}
	if err := checkTrustDomain(cert, cfg.TrustDomain); err != nil {
		return nil, nil, err
	}
	s, err := signer.Open(ctx, resolveURI(cfg.DataDir, cfg.Root.KeyURI), signer.Options{Timeout: cfg.Timeout})
	if err != nil {
		return nil, nil, fmt.Errorf("keys: offline issue: open the CA root key of root %s: %w", cfg.Root.ID, err)
	}
	defer s.Close()
	if !publicKeyEqual(cert.PublicKey, s.Public()) {
		return nil, nil, fmt.Errorf("keys: offline issue: root %s: key %s does not match the root certificate", cfg.Root.ID, s.KeyID())
	}
	j := &heldJournal{}
	c, err := ca.New(ca.Config{TrustDomain: cfg.TrustDomain, Issuer: ca.Issuer{Signer: s, Cert: cert}, NodeID: cfg.NodeID,
		Authorizer: offlineOnly{}, Journal: j})
	if err != nil {
		return nil, nil, fmt.Errorf("keys: offline issue: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("keys: offline issue: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("keys: offline issue: %w", err)
	}
	res, err := c.MintFor(ctx, spiffeid.ID{}, cfg.ID, csr, cfg.TTL)
	if err != nil {
		return nil, nil, fmt.Errorf("keys: offline issue: %w", err)
	}
	if len(j.recs) != 1 {
		return nil, nil, fmt.Errorf("keys: offline issue: %d records, want 1", len(j.recs))
	}
	return &x509svid.SVID{ID: cfg.ID, Certificates: []*x509.Certificate{res.Cert}, PrivateKey: key}, j.recs[0], nil
}

// heldJournal keeps the records instead of committing them.
type heldJournal struct{ recs []*record.Record }

func (h *heldJournal) Commit(_ context.Context, recs []*record.Record) error {
	h.recs = append(h.recs, recs...)
	return nil
}

// offlineOnly: offline issuance is CA-internal only (MintFor); no agent asks.
type offlineOnly struct{}

func (offlineOnly) Authorize(spiffeid.ID, spiffeid.ID) (ca.Grant, error) {
	return ca.Grant{}, fmt.Errorf("keys: offline issue: %w", ca.ErrPermissionDenied)
}
