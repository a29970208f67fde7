package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ca/rotation"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/signer"
)

// Key custody (see docs/DESIGN.md "Key custody"). The CA root key is named
// by a signer URI. Signing modes:
//
//   - direct: the root key signs every SVID (the issuer is the self-signed
//     root; chains are just the leaf). Default for pkcs11:. A local HSM
//     signs at tens of thousands per second with sub-millisecond latency,
//     so there is no throughput reason to let a key leave it.
//   - delegated: each node makes an in-memory P-256 key and the root key
//     signs its short-lived intermediate (ca/rotation). Default for awskms:
//     and gcpkms:: a KMS Sign is a 10-50 ms network call under a per-account
//     quota (AWS ECC: 1,000/s per region) and a KMS outage would otherwise
//     stop issuance at once; delegated needs one KMS call per node every
//     few hours and rides out outages of up to a third of the lifetime.
//     Also the default for the dev soft: key, so the embedded default has a
//     root key (on disk) and a separate issuing key (in memory only), as a
//     production CA would, and every dev run exercises the rotation path.
const (
	modeDirect    = "direct"
	modeDelegated = "delegated"

	defaultIntermediateTTL = 6 * time.Hour            // the smallest lifetime the 6 x 60m rule allows
	defaultRootTTL         = 5 * 365 * 24 * time.Hour // root certificates; rotate with `tier0 ca`
	pruneMargin            = 5 * time.Minute          // retired roots leave the bundle MaxTTL + this after retiring
	reconcileEvery         = time.Second
)

type keyFlags struct {
	signer     string
	mode       string
	interTTL   time.Duration
	allowShort bool
	rateLimit  float64
	timeout    time.Duration
	rootTTL    time.Duration
}

func (k *keyFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&k.signer, "signer", "", "`URI` of the CA root key on first start: pkcs11:..., awskms:///..., gcpkms:..., soft:/path (default: a DEV-ONLY soft key in DATA/ca/root.key); later roots: tier0 ca prepare")
	fl.StringVar(&k.mode, "signing-mode", "", "direct (the root key signs every SVID) or delegated (it signs short-lived in-memory intermediates); default: direct for pkcs11, delegated for awskms/gcpkms/soft")
	fl.DurationVar(&k.interTTL, "intermediate-ttl", defaultIntermediateTTL, "delegated mode: intermediate lifetime (at least 6 x the 1h maximum SVID TTL)")
	fl.BoolVar(&k.allowShort, "allow-short-intermediate", false, "TESTS ONLY: accept any --intermediate-ttl and issue SVIDs capped below 15m")
	_ = fl.MarkHidden("allow-short-intermediate")
	fl.Float64Var(&k.rateLimit, "signer-rate-limit", 0, "KMS signs per second from this node (default 500 AWS, 250 GCP; negative: unlimited)")
	fl.DurationVar(&k.timeout, "signer-timeout", 5*time.Second, "timeout of one CA key signature, retries included")
	fl.DurationVar(&k.rootTTL, "root-ttl", defaultRootTTL, "lifetime of the root certificate made on first start")
}

// validate checks the flags against the maximum SVID TTL.
func (k *keyFlags) validate(maxSVID time.Duration) error {
	switch k.mode {
	case "", modeDirect, modeDelegated:
	default:
		return fmt.Errorf("--signing-mode %q: want direct or delegated", k.mode)
	}
	if min := rotation.MinLifetimeFactor * maxSVID; k.interTTL < min && !k.allowShort {
		return fmt.Errorf("--intermediate-ttl %v is below %d x the maximum SVID TTL (%v): SVIDs would outlive or be capped by their issuer", k.interTTL, rotation.MinLifetimeFactor, min)
	}
	if k.interTTL <= 0 || k.timeout <= 0 || k.rootTTL < 24*time.Hour {
		return errors.New("--intermediate-ttl and --signer-timeout must be positive, --root-ttl at least 24h")
	}
	return nil
}

// minCappedTTL is ca.Config.MinCappedTTL: 0 (the default, MinTTL) unless
// tests shrink intermediates below the SVID TTL bounds.
func (k *keyFlags) minCappedTTL() time.Duration {
	if k.allowShort {
		return time.Second
	}
	return 0
}

func defaultMode(uri string) string {
	if scheme(uri) == "pkcs11" {
		return modeDirect
	}
	return modeDelegated
}

func scheme(uri string) string { s, _, _ := strings.Cut(uri, ":"); return s }

// rootID names a root by its SubjectKeyId (hex, 16 digits).
func rootID(cert *x509.Certificate) string {
	id := hex.EncodeToString(cert.SubjectKeyId)
	return id[:min(16, len(id))]
}

// checkedSigner is the root key as ca sees it. For KMS keys it verifies
// every signature before it is used, so that a KMS returning a bad
// signature is a clear, counted error (crypto/x509 would also refuse it,
// uncounted). PKCS#11 and soft keys are local: x509's own check suffices.
type checkedSigner struct {
	signer.Signer
	backend string
	verify  bool
	bad     *prometheus.CounterVec
}

func (c *checkedSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := c.Signer.Sign(r, digest, opts) // counted in tier0_signer_errors_total
	if err != nil {
		return nil, fmt.Errorf("keys: CA key %s: %w", c.KeyID(), err)
	}
	if c.verify {
		if err := signer.Verify(c.Public(), digest, sig, opts); err != nil {
			c.bad.WithLabelValues(c.backend).Inc()
			return nil, fmt.Errorf("keys: CA key %s returned a signature that does not verify (KMS fault; nothing was issued): %w", c.KeyID(), err)
		}
	}
	return sig, nil
}

// keyManager opens root keys, keeps the CA's issuer on the active root
// (direct, or through a rotation.Delegated), follows root activations in
// Raft state, and prunes retired roots on the leader.
type keyManager struct {
	td      spiffeid.TrustDomain
	dir     string
	f       *keyFlags
	maxSVID time.Duration
	node    *ha.Node
	log     *slog.Logger
	reg     prometheus.Registerer
	bad     *prometheus.CounterVec
	events  *prometheus.CounterVec
	expiry  prometheus.Gauge
	kick    chan struct{}
	newKey  func() (crypto.Signer, error) // delegated issuing keys; nil: in-memory P-256 (tests hook it)

	mu        sync.Mutex
	signers   map[string]*checkedSigner // open root keys by KeyURI
	activeID  string
	mode      string
	target    *ca.CA
	rot       *rotation.Delegated
	rotStop   context.CancelFunc
	rotDone   chan struct{}
	bundleSeq uint64
}

func newKeyManager(td spiffeid.TrustDomain, dir string, f *keyFlags, maxSVID time.Duration, node *ha.Node, log *slog.Logger, reg prometheus.Registerer) *keyManager {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	m := &keyManager{
		td: td, dir: dir, f: f, maxSVID: maxSVID, node: node, log: log, reg: reg,
		kick: make(chan struct{}, 1), signers: map[string]*checkedSigner{},
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
	if reg != nil {
		reg.MustRegister(m.bad, m.events, m.expiry)
	}
	return m
}

// resolveURI makes a relative soft: path relative to the data dir.
func (m *keyManager) resolveURI(uri string) string {
	if p, ok := strings.CutPrefix(uri, "soft:"); ok {
		if q := strings.TrimPrefix(p, "//"); !filepath.IsAbs(q) {
			return "soft:" + filepath.Join(m.dir, q)
		}
	}
	return uri
}

// open returns the (cached) signer for uri.
func (m *keyManager) open(ctx context.Context, uri string) (*checkedSigner, error) {
	m.mu.Lock()
	s, ok := m.signers[uri]
	m.mu.Unlock()
	if ok {
		return s, nil
	}
	raw, err := signer.Open(ctx, m.resolveURI(uri), signer.Options{
		Timeout: m.f.timeout, RateLimit: m.f.rateLimit, Logger: m.log, Registerer: m.reg,
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

// Start makes sure a root is active (creating the first one from --signer)
// and returns the issuer the CA starts with.
func (m *keyManager) Start(ctx context.Context) (ca.Issuer, error) {
	root, err := m.bootstrap(ctx)
	if err != nil {
		return ca.Issuer{}, err
	}
	return m.useRoot(ctx, root)
}

func (m *keyManager) bootstrap(ctx context.Context) (ha.CARoot, error) {
	if act, ok := m.node.CAState().Active(); ok {
		if m.f.signer != "" && m.f.signer != act.KeyURI {
			m.log.Warn("keys: --signer differs from the active CA root's key: using the active root (rotate with `tier0 ca prepare` and `tier0 ca activate`)", "active_key", act.KeyID)
		}
		return act, nil
	}
	uri := m.f.signer
	var adopt *x509.Certificate
	if uri == "" {
		old, err := ensureDevRootKey(m.dir, m.log)
		if err != nil {
			return ha.CARoot{}, err
		}
		uri, adopt = devRootURI, old
	}
	s, err := m.open(ctx, uri)
	if err != nil {
		return ha.CARoot{}, err
	}
	if adopt != nil && !publicKeyEqual(adopt.PublicKey, s.Public()) {
		adopt = nil
	}
	if b := m.node.Bundle(); len(b.Roots) > 0 && (adopt == nil || !containsDER(b.Roots, adopt.Raw)) {
		return ha.CARoot{}, errors.New("keys: the replicated trust bundle holds roots but no CA root matches this node's key: refusing to issue from an unknown CA")
	}
	cert := adopt
	if cert == nil {
		if cert, err = ca.NewRoot(m.td, s, m.f.rootTTL, time.Now()); err != nil {
			return ha.CARoot{}, fmt.Errorf("keys: make root certificate with %s: %w", s.KeyID(), err)
		}
	}
	if err := checkTrustDomain(cert, m.td); err != nil {
		return ha.CARoot{}, err
	}
	r, err := m.node.AddCARoot(ctx, m.td.Name(), ha.CARoot{
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
func (m *keyManager) useRoot(ctx context.Context, r ha.CARoot) (ca.Issuer, error) {
	cert, err := x509.ParseCertificate(r.CertDER)
	if err != nil {
		return ca.Issuer{}, fmt.Errorf("keys: root %s: %w", r.ID, err)
	}
	if err := checkTrustDomain(cert, m.td); err != nil {
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
	mode := m.f.mode
	if mode == "" {
		mode = defaultMode(r.KeyURI)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if mode == modeDirect {
		m.stopRotationLocked()
		if m.target != nil {
			if err := m.target.SetIssuer(rootIss); err != nil {
				return ca.Issuer{}, err
			}
		}
		m.activeID, m.mode = r.ID, mode
		m.expiry.Set(float64(cert.NotAfter.Unix()))
		m.log.Info("keys: issuing directly with the CA root key", "root", r.ID, "key", s.KeyID())
		return rootIss, nil
	}
	if m.rot == nil {
		m.rot, err = rotation.New(rotation.Config{
			TrustDomain: m.td, Lifetime: m.f.interTTL, Logger: m.log, NewKey: m.newKey,
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
	m.activeID, m.mode = r.ID, mode
	m.log.Info("keys: issuing from delegated in-memory intermediates", "root", r.ID, "key", s.KeyID(), "intermediate_ttl", m.f.interTTL)
	if m.target != nil {
		return ca.Issuer{}, nil // the rotation goroutine switches
	}
	if _, err := m.rot.Step(ctx); err != nil {
		return ca.Issuer{}, fmt.Errorf("keys: first delegated intermediate: %w", err)
	}
	iss, _ := m.rot.Current()
	return iss, nil
}

func (m *keyManager) stopRotationLocked() {
	if m.rotStop != nil {
		m.rotStop()
		<-m.rotDone
	}
	m.rot, m.rotStop, m.rotDone = nil, nil, nil
}

// Attach connects the CA and starts following Raft state until ctx ends.
func (m *keyManager) Attach(ctx context.Context, c *ca.CA, onBundle func(ha.Bundle)) {
	m.mu.Lock()
	m.target = c
	m.bundleSeq = m.node.Bundle().Sequence
	m.mu.Unlock()
	go m.run(ctx, onBundle)
}

// Kick makes the manager look at Raft state now.
func (m *keyManager) Kick() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

func (m *keyManager) run(ctx context.Context, onBundle func(ha.Bundle)) {
	t := time.NewTicker(reconcileEvery)
	defer t.Stop()
	for {
		m.reconcile(ctx, onBundle)
		select {
		case <-ctx.Done():
			m.mu.Lock()
			m.stopRotationLocked()
			for _, s := range m.signers {
				_ = s.Close()
			}
			m.mu.Unlock()
			return
		case <-m.kick:
		case <-t.C:
		}
	}
}

func (m *keyManager) reconcile(ctx context.Context, onBundle func(ha.Bundle)) {
	m.mu.Lock()
	if m.rot != nil && m.rotStop == nil {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		m.rotStop, m.rotDone = cancel, done
		if err := m.rot.SetTarget(m.target); err != nil {
			m.log.Error("keys: set issuer", "err", err)
		}
		go func() { defer close(done); m.rot.Run(rctx) }()
	}
	activeID := m.activeID
	m.mu.Unlock()

	if act, ok := m.node.CAState().Active(); ok && act.ID != activeID {
		m.log.Info("keys: CA root activated", "root", act.ID, "previous", activeID)
		if _, err := m.useRoot(ctx, act); err != nil {
			m.log.Error("keys: switch to the active root failed; still issuing from the previous one", "root", act.ID, "err", err)
		}
	}
	if m.node.IsLeader() {
		if n, err := m.node.PruneCARoots(ctx, time.Now().Add(-m.maxSVID-pruneMargin)); err != nil {
			m.log.Warn("keys: prune retired roots", "err", err)
		} else if n > 0 {
			m.log.Info("keys: retired roots removed from the bundle", "count", n)
		}
	}
	if b := m.node.Bundle(); b.Sequence != m.bundleSeq {
		m.bundleSeq = b.Sequence
		onBundle(b)
	}
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
