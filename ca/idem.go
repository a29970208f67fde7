package ca

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca/record"
)

// Idempotent retries (DESIGN.md "Idempotency keys"). A client may send a
// key with each request (Request.IdemKey); a retry of that request, with
// the same key and the same CSR public key from the same caller for the
// same SPIFFE ID, gets the certificate already committed for it instead
// of a second one. The journal remembers a compact hash of (caller, SPIFFE
// ID, public key, key) per committed record for the SVID's lifetime
// (IdemJournal); a lookup is only a hint: the record it names must match
// the request in every field the hash covers, be signed by the current
// issuer and have at least half its lifetime left, or a new SVID is minted.

// Idempotency key bounds (bytes).
const (
	MinIdemKey = 16
	MaxIdemKey = 64
)

// IdemJournal is a Journal that keeps an idempotency index (ha.Node, via
// the server's journal). keys[i] is recs[i]'s key hash (0: none).
// Committed returns the committed record whose key hash is key, or nil.
type IdemJournal interface {
	CommitKeyed(ctx context.Context, recs []*record.Record, keys []uint64) error
	Committed(ctx context.Context, key uint64) (*record.Record, error)
}

// IdemHash is the journal's key for an idempotent request: the first 8
// bytes of a SHA-256 over everything a replay must match, never 0.
func IdemHash(agentID, spiffeID, pubSHA256 string, key []byte) uint64 {
	h := sha256.New()
	for _, s := range []string{"tier0 idempotency v1", agentID, spiffeID, pubSHA256} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	h.Write(key)
	v := binary.BigEndian.Uint64(h.Sum(nil))
	if v == 0 {
		v = 1
	}
	return v
}

// checkIdemKey checks a request's key length (empty = none).
func checkIdemKey(key []byte) error {
	if len(key) != 0 && (len(key) < MinIdemKey || len(key) > MaxIdemKey) {
		return fmt.Errorf("ca: idempotency key of %d bytes, want %d..%d: %w", len(key), MinIdemKey, MaxIdemKey, ErrInvalidCSR)
	}
	return nil
}

// idemKeyFor returns the key hash of a request for id by caller with pub.
func idemKeyFor(caller, id spiffeid.ID, pub crypto.PublicKey, key []byte) (uint64, string) {
	if len(key) == 0 {
		return 0, ""
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return 0, ""
	}
	sum := sha256.Sum256(spki)
	pubHex := hex.EncodeToString(sum[:])
	return IdemHash(agentString(caller), id.String(), pubHex, key), pubHex
}

// replay returns the SVID already committed for this request, or nil
// (no key, no index, nothing committed, or a record that does not fit).
// A lookup error is logged and treated as a miss: the caller mints anew.
func (c *CA) replay(ctx context.Context, st *issuerState, now time.Time, caller, id spiffeid.ID, key uint64, pubHex string) *issued {
	j, ok := c.cfg.Journal.(IdemJournal)
	if key == 0 || !ok {
		return nil
	}
	rec, err := j.Committed(ctx, key)
	if err != nil {
		c.log.LogAttrs(ctx, slog.LevelDebug, "ca: idempotency lookup failed; minting anew", slog.String("error", err.Error()))
		return nil
	}
	if rec == nil || rec.AgentID != agentString(caller) || rec.SPIFFEID != id.String() ||
		rec.PublicKeySHA256 != pubHex || rec.IssuerKeyID != st.skiHex {
		return nil
	}
	if life := rec.NotAfter.Sub(rec.NotBefore); rec.NotAfter.Sub(now) < life/2 {
		return nil // past half-life: a renewal, not a retry
	}
	cert, err := x509.ParseCertificate(rec.CertDER)
	if err != nil {
		return nil
	}
	return &issued{cert: cert, rec: rec, replayed: true}
}

// commitKeyed commits recs with their key hashes when the journal keeps
// an index and any key is set, else plainly.
func (c *CA) commitKeyed(ctx context.Context, recs []*record.Record, keys []uint64) error {
	if j, ok := c.cfg.Journal.(IdemJournal); ok && anyKey(keys) {
		return c.logCommit(ctx, recs, j.CommitKeyed(ctx, recs, keys))
	}
	return c.commit(ctx, recs)
}

func anyKey(keys []uint64) bool {
	for _, k := range keys {
		if k != 0 {
			return true
		}
	}
	return false
}

// commit commits recs plainly (no idempotency keys).
func (c *CA) commit(ctx context.Context, recs []*record.Record) error {
	return c.logCommit(ctx, recs, c.cfg.Journal.Commit(ctx, recs))
}

// keyClaims are the idempotency keys whose SVID a MintBatch call is
// minting and committing. A retry that arrives while the attempt it
// repeats is still committing (its client gave up early) waits for that
// commit's outcome instead of missing the index and minting a second SVID.
type keyClaims struct {
	mu      sync.Mutex
	m       map[uint64]*keyClaim
	waiting int // calls waiting for another's claim (tests)
}

type keyClaim struct {
	owner *byte
	done  chan struct{}
}

// replayOrClaim returns the SVID committed for this request (nil when
// none), after waiting for any other call minting the same key; when it
// returns nil, nil and key is set, owner holds the key until releaseKey.
func (c *CA) replayOrClaim(ctx context.Context, st *issuerState, now time.Time, caller, id spiffeid.ID, key uint64, pubHex string, owner *byte) (*issued, error) {
	if key == 0 {
		return nil, nil
	}
	if err := c.claimKey(ctx, key, owner); err != nil {
		return nil, fmt.Errorf("ca: waiting for an earlier attempt of this request: %w", err)
	}
	if iss := c.replay(ctx, st, now, caller, id, key, pubHex); iss != nil {
		c.releaseKey(key, owner)
		return iss, nil
	}
	return nil, nil
}

// claimKey waits until no other call holds key, then holds it for owner
// (a key owner already holds, twice in one batch, is not waited for).
func (c *CA) claimKey(ctx context.Context, key uint64, owner *byte) error {
	for {
		c.claims.mu.Lock()
		cl := c.claims.m[key]
		if cl == nil {
			if c.claims.m == nil {
				c.claims.m = map[uint64]*keyClaim{}
			}
			c.claims.m[key] = &keyClaim{owner: owner, done: make(chan struct{})}
			c.claims.mu.Unlock()
			return nil
		}
		if cl.owner == owner {
			c.claims.mu.Unlock()
			return nil
		}
		c.claims.waiting++
		c.claims.mu.Unlock()
		var err error
		select {
		case <-cl.done:
		case <-ctx.Done():
			err = ctx.Err()
		}
		c.claims.mu.Lock()
		c.claims.waiting--
		c.claims.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// releaseKey ends owner's hold on key (no-op if it holds none).
func (c *CA) releaseKey(key uint64, owner *byte) {
	if key == 0 {
		return
	}
	c.claims.mu.Lock()
	defer c.claims.mu.Unlock()
	if cl := c.claims.m[key]; cl != nil && cl.owner == owner {
		delete(c.claims.m, key)
		close(cl.done)
	}
}
