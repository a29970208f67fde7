// Package pkcs11 is a signer over a private key in a PKCS#11 token (an HSM,
// or SoftHSM2 in tests), addressed by an RFC 7512 URI.
//
// A Signer keeps a pool of sessions on the token, logs in once (CKU_USER),
// caches the key's object handle, and recovers a session that the token
// dropped (closed, logged out, device removed): it re-opens the session,
// logs in again and retries the signature once.
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
)

// Config configures Open. Zero values get defaults.
type Config struct {
	Sessions int           // session pool size; default 4
	Timeout  time.Duration // per Sign call (waiting for a session included); default 5s
	Logger   *slog.Logger
}

// Signer signs with a private key held in a PKCS#11 token.
// P11 is the part of a PKCS#11 module (miekg/pkcs11's *Ctx) this package
// calls once the module is loaded: narrowed here so that the signer's
// session handling does not depend on the SDK's full surface.
type P11 interface {
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

type Signer struct {
	mod     *module
	p11     P11 // the module's functions this package calls (mod.ctx)
	uri     *URI
	pin     string // kept to log in again after the token drops the login
	timeout time.Duration
	log     *slog.Logger

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

// session is a pool slot; h == 0 means "no live session: open one".
type session struct{ h p11.SessionHandle }

// Open parses a pkcs11: URI, loads the module, finds the token and key,
// opens the session pool and logs in.
func Open(ctx context.Context, rawURI string, cfg Config) (_ *Signer, err error) {
	u, err := ParseURI(rawURI)
	if err != nil {
		return nil, err
	}
	if cfg.Sessions <= 0 {
		cfg.Sessions = 4
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	pin, err := readPIN(u.PinSource)
	if err != nil {
		return nil, err
	}
	mod, err := acquireModule(u.ModulePath)
	if err != nil {
		return nil, err
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
	defer func() {
		if err != nil {
			s.closeSessions()
			s.dropKeyCopy()
			mod.release()
		}
	}()
	if s.slot, err = s.findSlot(); err != nil {
		return nil, err
	}
	for range cfg.Sessions {
		s.pool <- &session{}
	}
	// Open every session now so that a bad PIN or missing key fails Open.
	first := <-s.pool
	err = s.openSession(first)
	s.pool <- first
	if err != nil {
		return nil, err
	}
	key, err := s.loadKey(first.h)
	if err != nil {
		return nil, err
	}
	s.installKey(key, 1)
	for range cfg.Sessions - 1 {
		sl := <-s.pool
		err := s.openSession(sl)
		s.pool <- sl
		if err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("signer/pkcs11: open: %w", err)
	}
	return s, nil
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

// openSession opens a session in sl and makes sure the user is logged in.
func (s *Signer) openSession(sl *session) error {
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
	sl.h = h
	return nil
}

// Public returns the public key read at Open.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// KeyID returns the key's URI without module path or PIN source.
func (s *Signer) KeyID() string { return s.uri.String() }

// Sign signs digest with the token key; rand is ignored (the token has its own).
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.SignContext(context.Background(), digest, opts)
}

// SignContext signs digest. ctx (and the configured timeout) bound the wait
// for a free session; a PKCS#11 call itself cannot be interrupted.
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
	sl, err := s.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { s.pool <- sl }()
	if s.closed.Load() {
		return nil, errs.ErrClosed
	}
	ks := s.ks.Load()
	sig, err := s.signWith(sl, ks, mech, data)
	if err != nil && recoverable(err) {
		s.log.Warn("signer/pkcs11: session lost; re-opening and retrying once", "err", err)
		s.dropSession(sl, err)
		if rerr := s.recoverSession(sl, ks.gen); rerr != nil {
			return nil, fmt.Errorf("signer/pkcs11: sign failed (%w) and session recovery failed: %w", err, rerr)
		}
		sig, err = s.signWith(sl, s.ks.Load(), mech, data)
		if err != nil {
			if recoverable(err) {
				s.dropSession(sl, err)
			}
			return nil, fmt.Errorf("signer/pkcs11: sign failed after session recovery: %w", err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("signer/pkcs11: sign: %w", err)
	}
	return s.encode(sig)
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

func (s *Signer) signWith(sl *session, ks *keyState, mech []*p11.Mechanism, data []byte) ([]byte, error) {
	if sl.h == 0 {
		if err := s.openSession(sl); err != nil {
			return nil, err
		}
	}
	if err := s.p11.SignInit(sl.h, mech, ks.handle); err != nil {
		return nil, err
	}
	return s.p11.Sign(sl.h, data)
}

// recoverSession opens a fresh session, logs in and, unless another
// goroutine already did after key generation gen failed, re-finds the key.
func (s *Signer) recoverSession(sl *session, gen uint64) error {
	if err := s.openSession(sl); err != nil {
		return err
	}
	return s.refreshKey(sl.h, gen)
}

// dropSession forgets sl's session after err, closing it unless err says
// the module has already done so: a closed session's number may since have
// been given to another session (the owner of the key copy, or another
// Signer's), which closing it again would kill.
func (s *Signer) dropSession(sl *session, err error) {
	if sl.h == 0 {
		return
	}
	if !hasCode(err, p11.CKR_SESSION_HANDLE_INVALID, p11.CKR_SESSION_CLOSED, p11.CKR_DEVICE_REMOVED, p11.CKR_TOKEN_NOT_PRESENT) {
		_ = s.p11.CloseSession(sl.h)
	}
	sl.h = 0
}

// recoverable reports whether err means the session (not the request) is bad.
func recoverable(err error) bool {
	return hasCode(err, p11.CKR_SESSION_HANDLE_INVALID, p11.CKR_SESSION_CLOSED, p11.CKR_USER_NOT_LOGGED_IN,
		p11.CKR_DEVICE_REMOVED, p11.CKR_TOKEN_NOT_PRESENT, p11.CKR_OBJECT_HANDLE_INVALID,
		p11.CKR_KEY_HANDLE_INVALID, p11.CKR_DEVICE_ERROR)
}

// hasCode reports whether err is a PKCS#11 error with one of the codes.
func hasCode(err error, codes ...uint) bool {
	var e p11.Error
	return errors.As(err, &e) && slices.Contains(codes, uint(e))
}

// Close waits for in-flight signatures, closes the sessions and releases the
// module. Later Sign calls return ErrClosed. Close is idempotent.
func (s *Signer) Close() error {
	s.once.Do(func() {
		s.closed.Store(true)
		close(s.done)
		s.closeSessions()
		s.dropKeyCopy()
		s.mod.release()
	})
	return nil
}

func (s *Signer) closeSessions() {
	for range cap(s.pool) {
		select {
		case sl := <-s.pool:
			s.dropSession(sl, nil)
		default:
			if len(s.pool) == 0 && s.closed.Load() {
				// In-flight signs hold the rest: wait for them.
				sl := <-s.pool
				s.dropSession(sl, nil)
			}
		}
	}
}
