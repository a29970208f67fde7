// Package pkcs11 is a signer over a private key in a PKCS#11 token (an HSM,
// or SoftHSM2 in tests), addressed by an RFC 7512 URI.
//
// A Signer keeps a pool of sessions on the token, logs in once (CKU_USER),
// caches the key's object handle, and recovers a session that the token
// dropped (closed, logged out): it re-opens the session, logs in again and
// retries the signature once. Device faults (CKR_GENERAL_ERROR,
// CKR_DEVICE_ERROR, CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT,
// CKR_CRYPTOKI_NOT_INITIALIZED, ...) go to a circuit breaker whose
// background probe re-initialises the module (C_Finalize, C_Initialize),
// re-opens the sessions, logs in, finds the key and re-makes its session
// copy until the token signs again.
package pkcs11

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	p11 "github.com/miekg/pkcs11"

	"github.com/tier0-ca/tier0/signer/internal/errs"
	"github.com/tier0-ca/tier0/signer/internal/health"
	"github.com/tier0-ca/tier0/signer/internal/keyalg"
)

// Config configures Open. Zero values get defaults.
type Config struct {
	Sessions int           // session pool size; default 4
	Timeout  time.Duration // per Sign call (waiting for a session included) and per recovery probe; default 5s
	// BreakerThreshold consecutive device faults open the circuit breaker
	// (default 5); while open, recovery probes run every ProbeMin (default
	// 250ms) doubling up to ProbeMax (default 2s).
	BreakerThreshold   int
	ProbeMin, ProbeMax time.Duration
	Logger             *slog.Logger
	Metrics            *health.Metrics // tier0_signer_circuit_open, tier0_signer_up; default unregistered
}

// P11 is the part of a PKCS#11 module (miekg/pkcs11's *Ctx) this package
// calls once the module is loaded: narrowed here so that the signer's
// session handling and recovery can be tested with fault injection.
type P11 interface {
	Initialize(opts ...p11.InitializeOption) error
	Finalize() error
	GetSlotList(tokenPresent bool) ([]uint, error)
	GetTokenInfo(slotID uint) (p11.TokenInfo, error)
	OpenSession(slotID uint, flags uint) (p11.SessionHandle, error)
	CloseSession(sh p11.SessionHandle) error
	Login(sh p11.SessionHandle, userType uint, pin string) error
	FindObjectsInit(sh p11.SessionHandle, temp []*p11.Attribute) error
	FindObjects(sh p11.SessionHandle, max int) ([]p11.ObjectHandle, bool, error)
	FindObjectsFinal(sh p11.SessionHandle) error
	GetAttributeValue(sh p11.SessionHandle, o p11.ObjectHandle, a []*p11.Attribute) ([]*p11.Attribute, error)
	SignInit(sh p11.SessionHandle, m []*p11.Mechanism, o p11.ObjectHandle) error
	Sign(sh p11.SessionHandle, message []byte) ([]byte, error)
	CopyObject(sh p11.SessionHandle, o p11.ObjectHandle, temp []*p11.Attribute) (p11.ObjectHandle, error)
}

var _ P11 = (*p11.Ctx)(nil)

// Signer signs with a private key held in a PKCS#11 token.
type Signer struct {
	mod     *module
	p11     P11 // the module's functions this package calls (mod.ctx)
	uri     *URI
	pin     string // kept to log in again after the token drops the login
	timeout time.Duration
	log     *slog.Logger
	breaker *health.Breaker

	pub     crypto.PublicKey
	keyType uint

	pool   chan *session
	done   chan struct{}
	closed atomic.Bool
	once   sync.Once

	mu   sync.Mutex // guards slot
	slot uint

	sessionCopy bool                     // try a session-object copy of the key (sessionkey.go)
	ks          atomic.Pointer[keyState] // the signing key handle
	refreshMu   sync.Mutex               // one key refresh at a time
}

// session is a pool slot; h == 0 means "no live session: open one". gen is
// the module generation h belongs to.
type session struct {
	h   p11.SessionHandle
	gen uint64
}

// Open parses a pkcs11: URI, loads the module, finds the token and key,
// opens the session pool and logs in.
func Open(ctx context.Context, rawURI string, cfg Config) (_ *Signer, err error) {
	u, err := ParseURI(rawURI)
	if err != nil {
		return nil, err
	}
	pin, err := readPIN(u.PinSource)
	if err != nil {
		return nil, err
	}
	mod, err := acquireModule(u.ModulePath)
	if err != nil {
		return nil, err
	}
	s := newSigner(mod, u, pin, cfg)
	defer func() {
		if err != nil {
			s.breaker.Stop()
			s.mod.mu.RLock()
			s.closeSessions(s.drain())
			s.dropKeyCopy()
			s.mod.mu.RUnlock()
			mod.release()
		}
	}()
	s.mod.mu.RLock()
	err = s.openPool()
	s.mod.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("signer/pkcs11: open: %w", err)
	}
	return s, nil
}

func newSigner(mod *module, u *URI, pin string, cfg Config) *Signer {
	if cfg.Sessions <= 0 {
		cfg.Sessions = 4
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Signer{
		mod:     mod,
		p11:     mod.ctx,
		uri:     u,
		pin:     pin,
		timeout: cfg.Timeout,
		log:     cfg.Logger.With("backend", "pkcs11", "key", u.String()),
		pool:    make(chan *session, cfg.Sessions),
		done:    make(chan struct{}),

		sessionCopy: u.SessionCopy,
	}
	for range cfg.Sessions {
		s.pool <- &session{}
	}
	s.ks.Store(&keyState{})
	s.breaker = health.New(health.Config{
		Backend:      "pkcs11",
		Key:          u.String(),
		Threshold:    cfg.BreakerThreshold,
		ProbeMin:     cfg.ProbeMin,
		ProbeMax:     cfg.ProbeMax,
		ProbeTimeout: cfg.Timeout,
		Probe:        s.probe,
		Logger:       cfg.Logger,
		Metrics:      cfg.Metrics,
	})
	return s
}

// openPool finds the token and key and opens every session, so that a bad
// PIN or a missing key fails Open. The caller holds mod.mu shared.
func (s *Signer) openPool() error {
	var err error
	if s.slot, err = s.findSlot(); err != nil {
		return err
	}
	slots := s.drain()
	defer func() {
		for _, sl := range slots {
			s.pool <- sl
		}
	}()
	gen := s.mod.gen.Load()
	for i, sl := range slots {
		if err := s.openSession(sl, gen); err != nil {
			return err
		}
		if i == 0 {
			key, err := s.loadKey(sl.h)
			if err != nil {
				return err
			}
			s.installKey(key, 1)
		}
	}
	return nil
}

// findSlot returns the slot holding the token the URI names.
func (s *Signer) findSlot() (uint, error) {
	c := s.p11
	slots, err := c.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("signer/pkcs11: C_GetSlotList: %w", err)
	}
	var labels []string
	for _, slot := range slots {
		ti, err := c.GetTokenInfo(slot)
		if err != nil {
			continue
		}
		labels = append(labels, fmt.Sprintf("%q (serial %s)", ti.Label, ti.SerialNumber))
		if (s.uri.Token == "" || ti.Label == s.uri.Token) &&
			(s.uri.Serial == "" || ti.SerialNumber == s.uri.Serial) &&
			(s.uri.SlotID == nil || *s.uri.SlotID == slot) {
			return slot, nil
		}
	}
	if len(labels) == 0 {
		return 0, fmt.Errorf("signer/pkcs11: no token matching %s: module %s has no initialized token", s.uri, s.mod.path)
	}
	return 0, fmt.Errorf("signer/pkcs11: no token matching %s in module %s (tokens present: %s)", s.uri, s.mod.path, strings.Join(labels, ", "))
}

// openSession opens a session in sl and makes sure the user is logged in;
// gen is the module generation the caller holds mod.mu shared for.
func (s *Signer) openSession(sl *session, gen uint64) error {
	s.mu.Lock()
	slot := s.slot
	s.mu.Unlock()
	h, err := s.p11.OpenSession(slot, p11.CKF_SERIAL_SESSION)
	if hasCode(err, p11.CKR_SLOT_ID_INVALID, p11.CKR_TOKEN_NOT_PRESENT, p11.CKR_DEVICE_REMOVED) {
		// The token may have come back in another slot.
		if slot2, ferr := s.findSlot(); ferr == nil {
			s.mu.Lock()
			s.slot = slot2
			s.mu.Unlock()
			h, err = s.p11.OpenSession(slot2, p11.CKF_SERIAL_SESSION)
		}
	}
	if err != nil {
		return fmt.Errorf("signer/pkcs11: open session on token %s: %w", s.uri, err)
	}
	if err := s.p11.Login(h, p11.CKU_USER, s.pin); err != nil && !errors.Is(err, p11.Error(p11.CKR_USER_ALREADY_LOGGED_IN)) {
		_ = s.p11.CloseSession(h)
		if errors.Is(err, p11.Error(p11.CKR_PIN_INCORRECT)) {
			return fmt.Errorf("signer/pkcs11: login to token %s failed: incorrect PIN (from pin-source %s): %w", s.uri, s.uri.PinSource, err)
		}
		return fmt.Errorf("signer/pkcs11: login to token %s: %w", s.uri, err)
	}
	sl.h, sl.gen = h, gen
	return nil
}

// Public returns the public key read at Open.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// KeyID returns the key's URI without module path or PIN source.
func (s *Signer) KeyID() string { return s.uri.String() }

// Health reports whether the key can sign (the circuit breaker's view).
func (s *Signer) Health() health.Health { return s.breaker.Health() }

// Sign signs digest with the token key; rand is ignored (the token has its own).
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.SignContext(context.Background(), digest, opts)
}

// SignContext signs digest. ctx (and the configured timeout) bound the wait
// for a free session; a PKCS#11 call itself cannot be interrupted.
//
// A device fault (see deviceFault) fails the call with an
// *errs.UnavailableError and counts against the circuit breaker; while the
// breaker is open, calls fail at once and a background probe re-initialises
// the module, re-opens the sessions, logs in, finds the key again and signs
// a test digest until the token works again.
func (s *Signer) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if s.closed.Load() {
		return nil, errs.ErrClosed
	}
	mech, data, err := s.mechanism(digest, opts)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("signer/pkcs11: %w", err)
	}
	if err := s.breaker.Allow(); err != nil {
		return nil, err
	}
	sig, err := s.sign(ctx, mech, data)
	switch {
	case err == nil:
		s.breaker.Success()
		return s.encode(sig)
	case errors.Is(err, errs.ErrTimeout):
		s.breaker.Failure(errs.ReasonTimeout, err)
		return nil, s.breaker.Unavailable(errs.ReasonTimeout, err)
	case deviceFault(err) || sessionLost(err):
		// A session error that survived re-opening the session is the
		// device's too.
		err = fmt.Errorf("%w: %w", errs.ErrDevice, err)
		s.breaker.Failure(errs.ReasonUnavailable, err)
		return nil, s.breaker.Unavailable(errs.ReasonUnavailable, err)
	}
	return nil, err
}

// sign takes a pooled session and signs data, re-opening a session the
// token dropped (and retrying once).
func (s *Signer) sign(ctx context.Context, mech []*p11.Mechanism, data []byte) ([]byte, error) {
	sl, err := s.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { s.pool <- sl }()
	if s.closed.Load() {
		return nil, errs.ErrClosed
	}
	s.mod.mu.RLock()
	defer s.mod.mu.RUnlock()
	gen := s.mod.gen.Load()
	ks := s.ks.Load()
	sig, err := s.signWith(sl, ks, gen, mech, data)
	if err != nil && sessionLost(err) {
		s.log.Warn("signer/pkcs11: session lost; re-opening and retrying once", "err", err)
		s.dropSession(sl, err, gen)
		if rerr := s.recoverSession(sl, ks.gen, gen); rerr != nil {
			// rerr classifies (a changed PIN is not a device fault); err is detail.
			return nil, fmt.Errorf("signer/pkcs11: sign failed (%v) and session recovery failed: %w", err, rerr) //nolint:errorlint // see above
		}
		sig, err = s.signWith(sl, s.ks.Load(), gen, mech, data)
		if err != nil {
			if sessionLost(err) || deviceFault(err) {
				s.dropSession(sl, err, gen)
			}
			return nil, fmt.Errorf("signer/pkcs11: sign failed after session recovery: %w", err)
		}
	}
	if err != nil {
		if deviceFault(err) {
			s.dropSession(sl, err, gen)
		}
		return nil, fmt.Errorf("signer/pkcs11: sign: %w", err)
	}
	return sig, nil
}

// acquire takes a session from the pool, waiting at most the configured
// timeout (and ctx) when all are busy.
func (s *Signer) acquire(ctx context.Context) (*session, error) {
	select {
	case sl := <-s.pool:
		return sl, nil
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	select {
	case sl := <-s.pool:
		return sl, nil
	case <-s.done:
		return nil, errs.ErrClosed
	case <-ctx.Done():
		err := ctx.Err()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %w", errs.ErrTimeout, err)
		}
		return nil, fmt.Errorf("signer/pkcs11: waiting for a session: %w", err)
	}
}

// signWith signs with sl in module generation gen, first (re-)opening the
// session and re-finding the key if they belong to an older generation.
func (s *Signer) signWith(sl *session, ks *keyState, gen uint64, mech []*p11.Mechanism, data []byte) ([]byte, error) {
	if sl.gen != gen {
		sl.h = 0 // from before a re-initialisation: gone with it
	}
	if sl.h == 0 {
		if err := s.openSession(sl, gen); err != nil {
			return nil, err
		}
	}
	if ks.modGen != gen {
		if err := s.refreshKey(sl.h, ks.gen, gen); err != nil {
			return nil, err
		}
		ks = s.ks.Load()
	}
	if err := s.p11.SignInit(sl.h, mech, ks.handle); err != nil {
		return nil, err
	}
	return s.p11.Sign(sl.h, data)
}

// recoverSession opens a fresh session, logs in and, unless another
// goroutine already did after key generation kgen failed, re-finds the key.
func (s *Signer) recoverSession(sl *session, kgen, gen uint64) error {
	if err := s.openSession(sl, gen); err != nil {
		return err
	}
	return s.refreshKey(sl.h, kgen, gen)
}

// dropSession forgets sl's session after err, closing it unless err says
// the module has already done so or it is from an older module generation:
// a closed session's number may since have been given to another session
// (the owner of the key copy, or another Signer's), which closing it again
// would kill.
func (s *Signer) dropSession(sl *session, err error, gen uint64) {
	if sl.h == 0 {
		return
	}
	if sl.gen == gen && !hasCode(err, p11.CKR_SESSION_HANDLE_INVALID, p11.CKR_SESSION_CLOSED, p11.CKR_DEVICE_REMOVED,
		p11.CKR_TOKEN_NOT_PRESENT, p11.CKR_CRYPTOKI_NOT_INITIALIZED) {
		_ = s.p11.CloseSession(sl.h)
	}
	sl.h = 0
}

// probe is the breaker's recovery probe: re-initialise the module (every
// signer on it re-opens its sessions and re-finds its key on next use),
// find the token's slot again and sign a test digest through the pool.
func (s *Signer) probe(ctx context.Context) error {
	if err := s.mod.reinit(); err != nil {
		return err
	}
	s.mod.mu.RLock()
	slot, err := s.findSlot()
	s.mod.mu.RUnlock()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.slot = slot
	s.mu.Unlock()
	h := keyalg.HashFor(s.pub)
	mech, data, err := s.mechanism(make([]byte, h.Size()), h)
	if err != nil {
		return err
	}
	_, err = s.sign(ctx, mech, data)
	return err
}

// sessionLost reports whether err means the session (not the request or
// the device) is bad: re-opening it may help.
func sessionLost(err error) bool {
	return hasCode(err, p11.CKR_SESSION_HANDLE_INVALID, p11.CKR_SESSION_CLOSED, p11.CKR_USER_NOT_LOGGED_IN,
		p11.CKR_OBJECT_HANDLE_INVALID, p11.CKR_KEY_HANDLE_INVALID)
}

// deviceFault reports whether err means the token or module cannot work
// now (removed, in error, not initialised, out of sessions): nothing but
// waiting and re-initialising helps.
func deviceFault(err error) bool {
	return hasCode(err, p11.CKR_GENERAL_ERROR, p11.CKR_DEVICE_ERROR, p11.CKR_DEVICE_REMOVED, p11.CKR_DEVICE_MEMORY,
		p11.CKR_HOST_MEMORY, p11.CKR_FUNCTION_FAILED, p11.CKR_TOKEN_NOT_PRESENT, p11.CKR_TOKEN_NOT_RECOGNIZED,
		p11.CKR_SLOT_ID_INVALID, p11.CKR_CRYPTOKI_NOT_INITIALIZED, p11.CKR_SESSION_COUNT, p11.CKR_SESSION_EXISTS)
}

// hasCode reports whether err is a PKCS#11 error with one of the codes.
func hasCode(err error, codes ...uint) bool {
	var e p11.Error
	return errors.As(err, &e) && slices.Contains(codes, uint(e))
}

// Close stops the recovery prober, waits for in-flight signatures, closes
// the sessions and releases the module. Later Sign calls return ErrClosed.
// Close is idempotent.
func (s *Signer) Close() error {
	s.once.Do(func() {
		s.closed.Store(true)
		close(s.done)
		s.breaker.Stop()
		slots := s.drain() // before taking mod.mu: in-flight signs need it to finish
		s.mod.mu.RLock()
		s.closeSessions(slots)
		s.dropKeyCopy()
		s.mod.mu.RUnlock()
		s.mod.release()
	})
	return nil
}

// drain takes every session slot out of the pool, waiting for the ones in
// use.
func (s *Signer) drain() []*session {
	slots := make([]*session, 0, cap(s.pool))
	for range cap(s.pool) {
		slots = append(slots, <-s.pool)
	}
	return slots
}

// closeSessions closes the slots' sessions of the current module
// generation. The caller holds mod.mu shared.
func (s *Signer) closeSessions(slots []*session) {
	gen := s.mod.gen.Load()
	for _, sl := range slots {
		s.dropSession(sl, nil, gen)
	}
}
