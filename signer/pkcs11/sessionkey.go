package pkcs11

import (
	"bytes"
	"fmt"

	p11 "github.com/miekg/pkcs11"
)

// keyState is the key handle signatures use: the token object itself, or a
// session-object copy of it (C_CopyObject with CKA_TOKEN=false) that lives
// in the token as long as its owner session stays open.
//
// Why a copy: a module may re-read and re-check a token object on every
// operation. SoftHSM2's file store, for one, re-opens and locks the token's
// files on each C_SignInit and C_Sign, which made a signature cost ~1.6x
// its session-object cost here (docs/BENCHMARKS.md). The copy never leaves
// the token and keeps the original's CKA_SENSITIVE / CKA_EXTRACTABLE; a
// module that refuses the copy (CKA_COPYABLE=false, or no C_CopyObject)
// just signs with the token object. URI query attribute
// x-session-copy=false turns the copy off.
type keyState struct {
	handle p11.ObjectHandle
	owner  p11.SessionHandle // session owning the copy; 0: handle is the token object
	gen    uint64            // bumped on every refresh
	modGen uint64            // the module generation handle (and owner) belong to
}

// installKey makes tokenKey (or a session copy of it) the signing key. It
// does not close the previous copy's owner session: a key is re-installed
// only when the previous copy is gone, and with it (a session object dies
// with its session) the owner session, whose handle the module may since
// have given to another session. The caller holds mod.mu shared.
func (s *Signer) installKey(tokenKey p11.ObjectHandle, gen uint64) {
	next := &keyState{handle: tokenKey, gen: gen, modGen: s.mod.gen.Load()}
	if s.sessionCopy {
		if owner, cp, err := s.copyKey(tokenKey); err != nil {
			s.log.Info("signer/pkcs11: signing with the token object (the module refused a session copy of the key)", "err", err)
		} else {
			next.handle, next.owner = cp, owner
		}
	}
	s.ks.Store(next)
}

// copyKey opens the owner session and copies the token key into it.
func (s *Signer) copyKey(tokenKey p11.ObjectHandle) (p11.SessionHandle, p11.ObjectHandle, error) {
	s.mu.Lock()
	slot := s.slot
	s.mu.Unlock()
	owner, err := s.p11.OpenSession(slot, p11.CKF_SERIAL_SESSION)
	if err != nil {
		return 0, 0, fmt.Errorf("signer/pkcs11: open session for the key copy: %w", err)
	}
	cp, err := s.p11.CopyObject(owner, tokenKey, []*p11.Attribute{p11.NewAttribute(p11.CKA_TOKEN, false)})
	if err != nil {
		_ = s.p11.CloseSession(owner)
		return 0, 0, fmt.Errorf("signer/pkcs11: C_CopyObject: %w", err)
	}
	return owner, cp, nil
}

// refreshKey re-finds the token key through session h (of module
// generation modGen) and installs it, unless another goroutine already did
// since key generation gen failed. The caller holds mod.mu shared.
func (s *Signer) refreshKey(h p11.SessionHandle, gen, modGen uint64) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	cur := s.ks.Load()
	if cur.gen != gen && cur.modGen == modGen {
		return nil
	}
	gen = cur.gen
	if cur.owner != 0 && cur.modGen == modGen {
		switch alive, err := s.isOurKey(h, cur.handle); {
		case err != nil:
			return err // cannot tell: keep the copy, the next signature retries
		case alive:
			return nil // only the session was lost; the copy lives on
		}
	}
	key, err := s.findPrivateKey(h)
	if err != nil {
		return err
	}
	s.installKey(key, gen+1)
	return nil
}

// isOurKey reports whether handle is (still) a private key with the
// URI's label and id, not a stale handle the module has reused. An invalid
// handle is a dead copy (false, nil); another error is returned, so that
// a transient fault does not leak a live copy and its owner session.
func (s *Signer) isOurKey(h p11.SessionHandle, handle p11.ObjectHandle) (bool, error) {
	attrs, err := s.p11.GetAttributeValue(h, handle, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, nil),
		p11.NewAttribute(p11.CKA_LABEL, nil),
		p11.NewAttribute(p11.CKA_ID, nil),
	})
	if hasCode(err, p11.CKR_OBJECT_HANDLE_INVALID, p11.CKR_KEY_HANDLE_INVALID) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("signer/pkcs11: check the session copy of %s: %w", s.uri, err)
	}
	if len(attrs) != 3 || bytesToUint(attrs[0].Value) != p11.CKO_PRIVATE_KEY {
		return false, nil
	}
	return (s.uri.Object == "" || string(attrs[1].Value) == s.uri.Object) &&
		(s.uri.ID == nil || bytes.Equal(attrs[2].Value, s.uri.ID)), nil
}

// dropKeyCopy closes the session owning the key copy (at Close), unless it
// is from an older module generation. The caller holds mod.mu shared.
func (s *Signer) dropKeyCopy() {
	if ks := s.ks.Swap(&keyState{}); ks.owner != 0 && ks.modGen == s.mod.gen.Load() {
		_ = s.p11.CloseSession(ks.owner)
	}
}
