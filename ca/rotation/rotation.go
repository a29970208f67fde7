// Package rotation keeps a delegated issuing key: an in-memory P-256 key
// whose short-lived intermediate certificate is signed by the CA root key
// (an HSM or KMS key), rotated with SPIRE-style A/B slots.
//
// Timeline of one intermediate of lifetime L issued at t0:
//
//	t0            t0+L/2                 t0+5L/6           t0+L
//	|-- active ----|-- next prepared ------|-- next active ---|
//
// At half life the next intermediate is prepared (a root-key signature, the
// only KMS/HSM call of the scheme); at 5/6 of life it becomes the issuer.
// Preparing early leaves L/3 to ride out a KMS outage; activating at 5/6
// leaves L/6 of validity on the old intermediate, and since L >= 6 x the
// maximum SVID TTL (checked by callers), every SVID signed by it before the
// switch fits within it: no SVID is ever capped in steady state, and ca
// caps NotAfter at the issuer's NotAfter in any case. Every intermediate
// chains to the same root, so the bundle is unchanged by a rotation.
//
// The issuing key lives only in this process's memory: it is never
// serialized, logged, or handed to anything but the Target (ca.CA).
//
// This package is pure rotation logic: it imports no KMS SDK and no Raft.
package rotation

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca"
)

// Thresholds, as fractions of an intermediate's lifetime.
const (
	PrepareNum, PrepareDen   = 1, 2 // prepare the next intermediate at 1/2
	ActivateNum, ActivateDen = 5, 6 // switch to it at 5/6
	// MinLifetimeFactor: the intermediate lifetime must be at least this
	// many times the maximum SVID TTL (5/6 + 1/6 x 6 = the full SVID fits).
	MinLifetimeFactor = 6
)

// ErrNoRoot is returned by Step before SetRoot.
var ErrNoRoot = errors.New("rotation: no root issuer set")

// Target receives issuer swaps; *ca.CA implements it.
type Target interface {
	SetIssuer(ca.Issuer) error
}

// Config configures a Delegated.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Lifetime    time.Duration                 // intermediate lifetime (required)
	Clock       func() time.Time              // default time.Now
	Logger      *slog.Logger                  // default slog.Default()
	NewKey      func() (crypto.Signer, error) // default: in-memory P-256
	RetryMin    time.Duration                 // first retry after a failure; default 1s
	RetryMax    time.Duration                 // backoff cap; default 30s
	// OnEvent, if set, is told of every rotation event: "activated",
	// "prepared" or "error" (with err). For metrics.
	OnEvent func(event string, iss ca.Issuer, err error)
}

// Delegated owns the A/B slots. It is safe for concurrent use.
type Delegated struct {
	cfg  Config
	kick chan struct{}

	mu       sync.Mutex
	target   Target
	root     ca.Issuer
	rootGen  uint64
	cur      *slot
	next     *slot
	failures int
}

type slot struct {
	iss      ca.Issuer
	issuedAt time.Time
	rootGen  uint64
}

func (s *slot) at(num, den int64) time.Time {
	life := s.iss.Cert.NotAfter.Sub(s.issuedAt)
	return s.issuedAt.Add(time.Duration(int64(life) * num / den))
}

// New validates cfg and returns a Delegated with no root and no target.
func New(cfg Config) (*Delegated, error) {
	if cfg.TrustDomain.IsZero() || cfg.Lifetime <= 0 {
		return nil, fmt.Errorf("rotation: trust domain and a positive lifetime are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NewKey == nil {
		cfg.NewKey = func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = time.Second
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(30*time.Second, cfg.RetryMin)
	}
	return &Delegated{cfg: cfg, kick: make(chan struct{}, 1)}, nil
}

// SetRoot sets the parent (the root key and certificate). A different root
// than the current one makes the next Step replace both slots with
// intermediates signed by it; until that succeeds the old intermediate
// stays the issuer (its root stays in the bundle while retired).
func (d *Delegated) SetRoot(root ca.Issuer) {
	d.mu.Lock()
	if d.root.Cert == nil || !d.root.Cert.Equal(root.Cert) {
		d.root = root
		d.rootGen++
		d.failures = 0
	}
	d.mu.Unlock()
	d.Kick()
}

// SetTarget attaches the CA and hands it the current intermediate, if any.
func (d *Delegated) SetTarget(t Target) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.target = t
	if d.cur != nil {
		return t.SetIssuer(d.cur.iss)
	}
	return nil
}

// Current returns the active intermediate issuer.
func (d *Delegated) Current() (ca.Issuer, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur == nil {
		return ca.Issuer{}, false
	}
	return d.cur.iss, true
}

// Kick makes Run step now.
func (d *Delegated) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Step does whatever the slots need now (mint a first or replacement
// intermediate, prepare the next, switch to it) and returns when it should
// run again. On error it returns a backoff time and keeps the current
// issuer.
func (d *Delegated) Step(ctx context.Context) (time.Time, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.cfg.Clock()
	if d.root.Cert == nil {
		return now.Add(d.cfg.RetryMin), ErrNoRoot
	}
	if d.cur == nil || d.cur.rootGen != d.rootGen || !now.Before(d.cur.iss.Cert.NotAfter) {
		s, err := d.mint(ctx, now)
		if err != nil {
			return d.failed(now, "mint intermediate", err)
		}
		if err := d.activate(s); err != nil {
			return d.failed(now, "activate intermediate", err)
		}
	}
	if d.next != nil && d.next.rootGen != d.rootGen {
		d.next = nil
	}
	if d.next == nil && !now.Before(d.cur.at(PrepareNum, PrepareDen)) {
		s, err := d.mint(ctx, now)
		if err != nil {
			wake, err := d.failed(now, "prepare next intermediate", err)
			return minTime(wake, d.cur.at(ActivateNum, ActivateDen)), err
		}
		d.next = s
		d.event("prepared", s.iss, nil)
		d.cfg.Logger.Info("rotation: next intermediate prepared", "serial", s.iss.Cert.SerialNumber.Text(16), "not_after", s.iss.Cert.NotAfter)
	}
	if d.next != nil && !now.Before(d.cur.at(ActivateNum, ActivateDen)) {
		if err := d.activate(d.next); err != nil {
			return d.failed(now, "activate next intermediate", err)
		}
	}
	d.failures = 0
	wake := d.cur.at(PrepareNum, PrepareDen)
	if d.next != nil {
		wake = d.cur.at(ActivateNum, ActivateDen)
	}
	// Never spin: a root about to expire caps intermediates to nearly nothing.
	return maxTime(wake, now.Add(d.cfg.RetryMin/4)), nil
}

// Run steps until ctx ends, sleeping until the next threshold, a Kick, or
// a retry after an error (logged and reported to OnEvent).
func (d *Delegated) Run(ctx context.Context) {
	for {
		wake, err := d.Step(ctx)
		if err != nil && ctx.Err() == nil {
			d.cfg.Logger.Error("rotation: delegated intermediate", "err", err, "retry_at", wake)
		}
		t := time.NewTimer(time.Until(wake))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-d.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

func (d *Delegated) mint(ctx context.Context, now time.Time) (*slot, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("rotation: %w", err)
	}
	key, err := d.cfg.NewKey()
	if err != nil {
		return nil, fmt.Errorf("rotation: generate issuing key: %w", err)
	}
	cert, err := ca.NewIntermediate(d.cfg.TrustDomain, d.root, key.Public(), d.cfg.Lifetime, now)
	if err != nil {
		return nil, fmt.Errorf("rotation: sign intermediate with root key: %w", err)
	}
	return &slot{iss: ca.Issuer{Signer: key, Cert: cert, Chain: []*x509.Certificate{cert}}, issuedAt: now, rootGen: d.rootGen}, nil
}

func (d *Delegated) activate(s *slot) error {
	if d.target != nil {
		if err := d.target.SetIssuer(s.iss); err != nil {
			return err
		}
	}
	d.cur, d.next = s, nil
	d.event("activated", s.iss, nil)
	d.cfg.Logger.Info("rotation: intermediate activated", "serial", s.iss.Cert.SerialNumber.Text(16), "not_after", s.iss.Cert.NotAfter)
	return nil
}

func (d *Delegated) failed(now time.Time, what string, err error) (time.Time, error) {
	d.failures++
	backoff := d.cfg.RetryMin << min(d.failures-1, 16)
	backoff = min(backoff, d.cfg.RetryMax)
	err = fmt.Errorf("rotation: %s (attempt %d): %w", what, d.failures, err)
	d.event("error", ca.Issuer{}, err)
	return now.Add(backoff), err
}

func (d *Delegated) event(ev string, iss ca.Issuer, err error) {
	if d.cfg.OnEvent != nil {
		d.cfg.OnEvent(ev, iss, err)
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
