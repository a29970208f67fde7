package keys

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ca/rotation"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/signer"
)

// State is the replicated CA state the manager reads and changes
// (implemented by *ha.Node).
type State interface {
	CAState() ha.CAState
	AddCARoot(ctx context.Context, trustDomain string, r ha.CARoot) (ha.CARoot, error)
	ActivateCARoot(ctx context.Context, id string) (ha.CARoot, error)
	PruneCARoots(ctx context.Context, before time.Time) (int, error)
	Bundle() ha.Bundle
	IsLeader() bool
	// Root rotation gate and taints (readiness.go).
	LocalNodeID() string
	Voters() ([]string, error)
	ReportCAKeys(ctx context.Context, r ha.NodeCAKeys) error
	TaintCAKey(ctx context.Context, kind, id string) error
	TrustState() ha.TrustState
}

// Config configures a Manager.
type Config struct {
	Settings
	TrustDomain spiffeid.TrustDomain
	DataDir     string        // relative soft: key paths are inside it
	MaxSVID     time.Duration // default ca.DefaultMaxTTL
	State       State
	Logger      *slog.Logger
	Registerer  prometheus.Registerer
	// NewKey makes delegated issuing keys; nil: in-memory P-256 (tests hook it).
	NewKey func() (crypto.Signer, error)
	// Journal, when set, records every audit key certificate the manager
	// issues (audit_record.go).
	Journal Journal
}

// Manager opens root keys, keeps the CA's issuer on the active root
// (direct, or through a rotation.Delegated), follows root activations in
// raft state, and prunes retired roots on the leader.
type Manager struct {
	cfg    Config
	log    *slog.Logger
	bad    *prometheus.CounterVec
	events *prometheus.CounterVec
	expiry prometheus.Gauge
	kick   chan struct{}

	mu        sync.Mutex
	signers   map[string]*checkedSigner // open root keys by KeyURI
	active    *checkedSigner            // the active root's key
	activeID  string
	mode      string
	target    *ca.CA
	onBundle  func(ha.Bundle)
	rot       *rotation.Delegated
	rotStop   context.CancelFunc
	rotDone   chan struct{}
	bundleSeq uint64
	rep       reporter // readiness.go

	bg     context.Context    // background work (audit_record.go), ended by Close
	bgStop context.CancelFunc //
	bgWG   sync.WaitGroup
}

// New validates cfg, fills defaults and registers the metrics.
func New(cfg Config) (*Manager, error) {
	if cfg.TrustDomain.IsZero() || cfg.State == nil || cfg.DataDir == "" {
		return nil, errors.New("keys: TrustDomain, State and DataDir are required")
	}
	if cfg.MaxSVID == 0 {
		cfg.MaxSVID = ca.DefaultMaxTTL
	}
	cfg.Defaults()
	if err := cfg.Validate(cfg.MaxSVID); err != nil {
		return nil, err
	}
	if abs, err := filepath.Abs(cfg.DataDir); err == nil {
		cfg.DataDir = abs
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Manager{
		cfg: cfg, log: cfg.Logger, kick: make(chan struct{}, 1), signers: map[string]*checkedSigner{},
		bad: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tier0_ca_bad_signatures_total",
			Help: "Signatures from the CA root key (KMS) that did not verify; nothing is issued with them.",
		}, []string{"backend"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tier0_ca_intermediate_rotations_total",
			Help: "Delegated intermediate events: prepared, activated, error.",
		}, []string{"event"}),
		expiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tier0_ca_issuer_not_after_seconds",
			Help: "NotAfter (unix seconds) of the certificate currently signing SVIDs.",
		}),
	}
	m.bg, m.bgStop = context.WithCancel(context.Background())
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(m.bad, m.events, m.expiry)
	}
	for _, b := range []string{"awskms", "gcpkms"} { // the backends whose signatures are verified: zero from the start
		m.bad.WithLabelValues(b)
	}
	return m, nil
}

// resolveURI makes a relative soft: path relative to the data dir.
func resolveURI(dir, uri string) string {
	if p, ok := strings.CutPrefix(uri, "soft:"); ok {
		if q := strings.TrimPrefix(p, "//"); !filepath.IsAbs(q) {
			return "soft:" + filepath.Join(dir, q)
		}
	}
	return uri
}

// open returns the (cached) signer for uri.
func (m *Manager) open(ctx context.Context, uri string) (*checkedSigner, error) {
	m.mu.Lock()
	s, ok := m.signers[uri]
	m.mu.Unlock()
	if ok {
		return s, nil
	}
	raw, err := signer.Open(ctx, resolveURI(m.cfg.DataDir, uri), signer.Options{
		Timeout: m.cfg.Timeout, RateLimit: m.cfg.RateLimit, Logger: m.log, Registerer: m.cfg.Registerer,
	})
	if err != nil {
		return nil, fmt.Errorf("keys: open CA key: %w", err)
	}
	b := scheme(uri)
	s = &checkedSigner{Signer: raw, backend: b, verify: b == "awskms" || b == "gcpkms", bad: m.bad}
	m.mu.Lock()
	if old, ok := m.signers[uri]; ok {
		m.mu.Unlock()
		_ = raw.Close()
		return old, nil
	}
	m.signers[uri] = s
	m.mu.Unlock()
	return s, nil
}

// Start makes sure a root is active (creating the first one from
// Settings.Signer, or the dev soft key) and returns the issuer the CA
// starts with.
func (m *Manager) Start(ctx context.Context) (ca.Issuer, error) {
	root, err := m.bootstrap(ctx)
	if err != nil {
		return ca.Issuer{}, err
	}
	return m.useRoot(ctx, root)
}

func (m *Manager) bootstrap(ctx context.Context) (ha.CARoot, error) {
	if act, ok := m.cfg.State.CAState().Active(); ok {
		return act, nil
	}
	uri := m.cfg.Signer
	var adopt *x509.Certificate
	if uri == "" {
		old, err := ensureDevRootKey(m.cfg.DataDir, m.log)
		if err != nil {
			return ha.CARoot{}, err
		}
		uri, adopt = DevRootURI, old
	}
	s, err := m.open(ctx, uri)
	if err != nil {
		return ha.CARoot{}, err
	}
	if adopt != nil && !publicKeyEqual(adopt.PublicKey, s.Public()) {
		adopt = nil
	}
	if b := m.cfg.State.Bundle(); len(b.Roots) > 0 && (adopt == nil || !containsDER(b.Roots, adopt.Raw)) {
		return ha.CARoot{}, errors.New("keys: the replicated trust bundle holds roots but no CA root matches this node's key: refusing to issue from an unknown CA")
	}
	cert := adopt
	if cert == nil {
		if cert, err = ca.NewRoot(m.cfg.TrustDomain, s, m.cfg.RootTTL, time.Now()); err != nil {
			return ha.CARoot{}, fmt.Errorf("keys: make root certificate with %s: %w", s.KeyID(), err)
		}
	}
	if err := checkTrustDomain(cert, m.cfg.TrustDomain); err != nil {
		return ha.CARoot{}, err
	}
	r, err := m.cfg.State.AddCARoot(ctx, m.cfg.TrustDomain.Name(), ha.CARoot{
		ID: rootID(cert), State: ha.RootActive, KeyURI: uri, KeyID: s.KeyID(), CertDER: cert.Raw, NotAfter: cert.NotAfter,
	})
	if err != nil {
		return ha.CARoot{}, fmt.Errorf("keys: record first CA root: %w", err)
	}
	m.log.Info("keys: first CA root created", "id", r.ID, "key", r.KeyID, "not_after", r.NotAfter)
	return r, nil
}

// useRoot makes r the root issuance descends from. Before Attach it
// returns the issuer synchronously; afterwards a delegated switch happens
// in the rotation goroutine.
func (m *Manager) useRoot(ctx context.Context, r ha.CARoot) (ca.Issuer, error) {
	cert, err := x509.ParseCertificate(r.CertDER)
	if err != nil {
		return ca.Issuer{}, fmt.Errorf("keys: root %s: %w", r.ID, err)
	}
	if err := checkTrustDomain(cert, m.cfg.TrustDomain); err != nil {
		return ca.Issuer{}, err
	}
	s, err := m.open(ctx, r.KeyURI)
	if err != nil {
		return ca.Issuer{}, fmt.Errorf("keys: root %s: %w", r.ID, err)
	}
	if !publicKeyEqual(cert.PublicKey, s.Public()) {
		return ca.Issuer{}, fmt.Errorf("keys: root %s: key %s does not match the root certificate", r.ID, s.KeyID())
	}
	rootIss := ca.Issuer{Signer: s, Cert: cert}
	mode := m.cfg.Mode
	if mode == "" {
		mode = defaultMode(r.KeyURI)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if mode == Direct {
		m.stopRotationLocked()
		if m.target != nil {
			if err := m.target.SetIssuer(rootIss); err != nil {
				return ca.Issuer{}, err
			}
		}
		m.activeID, m.mode, m.active = r.ID, mode, s
		m.expiry.Set(float64(cert.NotAfter.Unix()))
		m.log.Info("keys: issuing directly with the CA root key", "root", r.ID, "key", s.KeyID())
		return rootIss, nil
	}
	if m.rot == nil {
		m.rot, err = rotation.New(rotation.Config{
			TrustDomain: m.cfg.TrustDomain, Lifetime: m.cfg.IntermediateTTL, Logger: m.log, NewKey: m.cfg.NewKey,
			OnEvent: func(ev string, iss ca.Issuer, _ error) {
				m.events.WithLabelValues(ev).Inc()
				if ev == "activated" {
					m.expiry.Set(float64(iss.Cert.NotAfter.Unix()))
				}
			},
		})
		if err != nil {
			return ca.Issuer{}, err
		}
	}
	m.rot.SetRoot(rootIss)
	m.activeID, m.mode, m.active = r.ID, mode, s
	m.log.Info("keys: issuing from delegated in-memory intermediates", "root", r.ID, "key", s.KeyID(), "intermediate_ttl", m.cfg.IntermediateTTL)
	if m.target != nil {
		return ca.Issuer{}, nil // the rotation goroutine switches
	}
	if _, err := m.rot.Step(ctx); err != nil {
		return ca.Issuer{}, fmt.Errorf("keys: first delegated intermediate: %w", err)
	}
	iss, _ := m.rot.Current()
	return iss, nil
}

func (m *Manager) stopRotationLocked() {
	if m.rotStop != nil {
		m.rotStop()
		<-m.rotDone
	}
	m.rot, m.rotStop, m.rotDone = nil, nil, nil
}

// Attach connects the CA: from now on Run switches its issuer and calls
// onBundle (if not nil) whenever the replicated bundle changes.
func (m *Manager) Attach(c *ca.CA, onBundle func(ha.Bundle)) {
	m.mu.Lock()
	m.target, m.onBundle = c, onBundle
	m.bundleSeq = m.cfg.State.Bundle().Sequence
	m.mu.Unlock()
}

// Kick makes Run look at raft state now.
func (m *Manager) Kick() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Run follows raft state (after Attach) until ctx ends; it stops and joins
// the delegated rotation before it returns.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(reconcileEvery)
	defer t.Stop()
	probe := time.NewTicker(m.cfg.RootProbe)
	defer probe.Stop()
	reported := make(chan struct{})
	go func() { defer close(reported); m.reportLoop(ctx) }() // readiness.go
	for {
		m.reconcile(ctx)
		select {
		case <-ctx.Done():
			m.mu.Lock()
			m.stopRotationLocked()
			m.mu.Unlock()
			<-reported
			return nil
		case <-m.kick:
		case <-t.C:
		case <-probe.C:
			m.probeRoot(ctx)
		}
	}
}

// probeRoot test-signs with the active root key in delegated mode, where
// it otherwise signs once per rotation, so that a dead HSM/KMS shows now
// (a WARN line per failed probe, tier0_signer_errors_total, the signer's
// health and breaker) rather than when the next intermediate is due. In
// direct mode every SVID exercises the key.
func (m *Manager) probeRoot(ctx context.Context) {
	m.mu.Lock()
	mode, s, id := m.mode, m.active, m.activeID
	m.mu.Unlock()
	if mode != Delegated || s == nil {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	if err := signer.Probe(pctx, s); err != nil && ctx.Err() == nil {
		m.log.Warn("keys: the CA root key failed its periodic test signature; the next intermediate rotation needs it",
			"root", id, "health", s.Health().State.String(), "err", err)
	}
}

// SignerReady is the node's "signer" readiness check: in direct mode the
// active root key signs every SVID, so while it is down (its breaker open)
// the node is not ready; the reason names the backend and when the next
// recovery probe runs, not the key. In delegated mode issuance goes on
// with the in-memory intermediate, and the root's health shows in its
// metrics and probe logs instead.
func (m *Manager) SignerReady() error {
	m.mu.Lock()
	mode, s := m.mode, m.active
	m.mu.Unlock()
	if mode != Direct || s == nil {
		return nil
	}
	h := s.Health()
	if h.State != signer.Down {
		return nil
	}
	return fmt.Errorf("signer unavailable: the %s CA key cannot sign since %s (next recovery probe in %v)",
		s.backend, h.Since.UTC().Format(time.RFC3339), max(0, time.Until(h.RetryAt)).Round(time.Millisecond))
}

// Close closes the root keys (after Run has returned).
func (m *Manager) Close() error {
	m.bgStop()
	m.bgWG.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for uri, s := range m.signers {
		if err := s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("keys: close %s: %w", s.KeyID(), err))
		}
		delete(m.signers, uri)
	}
	return errors.Join(errs...)
}

func (m *Manager) reconcile(ctx context.Context) {
	m.mu.Lock()
	if m.rot != nil && m.rotStop == nil && m.target != nil {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		m.rotStop, m.rotDone = cancel, done
		if err := m.rot.SetTarget(m.target); err != nil {
			m.log.Error("keys: set issuer", "err", err)
		}
		go func(rot *rotation.Delegated) { defer close(done); rot.Run(rctx) }(m.rot)
	}
	activeID, onBundle := m.activeID, m.onBundle
	m.mu.Unlock()

	st := m.cfg.State
	if act, ok := st.CAState().Active(); ok && act.ID != activeID {
		if _, err := m.useRoot(ctx, act); err != nil {
			if msg := act.ID + ": " + err.Error(); msg != m.rep.switchErr { // once per reason, not every second
				m.rep.switchErr = msg
				m.log.Error("keys: switch to the active root failed; still issuing from the previous one (retrying every second; `tier0 ca list` shows this node's state)", "root", act.ID, "err", err)
			}
		} else {
			m.rep.switchErr = ""
			m.log.Info("keys: CA root activated", "root", act.ID, "previous", activeID)
		}
	}
	if st.IsLeader() {
		if n, err := st.PruneCARoots(ctx, time.Now().Add(-m.cfg.MaxSVID-pruneMargin)); err != nil {
			m.log.Warn("keys: prune retired roots", "err", err)
		} else if n > 0 {
			m.log.Info("keys: retired roots removed from the bundle", "count", n)
		}
	}
	if b := st.Bundle(); b.Sequence != m.bundleSeq && onBundle != nil {
		m.bundleSeq = b.Sequence
		onBundle(b)
	}
}

// rootID names a root by its SubjectKeyId (hex, 16 digits).
func rootID(cert *x509.Certificate) string {
	id := hex.EncodeToString(cert.SubjectKeyId)
	return id[:min(16, len(id))]
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

func containsDER(list [][]byte, der []byte) bool {
	for _, d := range list {
		if string(d) == string(der) {
			return true
		}
	}
	return false
}
