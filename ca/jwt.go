package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca/record"
)

// JWT-SVIDs are signed with ES256 by a JWTKey: like the delegated X.509
// issuing key, an in-memory P-256 key with a validity, whose public part is
// published in the trust bundle (Raft state) before it signs anything. A
// token never outlives its key, so a key can leave the bundle once expired.

// Audience limits.
const (
	MaxAudiences     = 16
	MaxAudienceBytes = 256
)

// ErrInvalidAudience: no audience, an empty one, or too many or too long.
// Maps to InvalidArgument.
var ErrInvalidAudience = errors.New("invalid audience")

// JWTKey is a JWT-SVID signing key.
type JWTKey struct {
	ID       string // the JWT "kid"
	Signer   crypto.Signer
	NotAfter time.Time
}

// NewJWTKey returns a fresh in-memory P-256 key valid until now+lifetime,
// with a random 128-bit key ID.
func NewJWTKey(now time.Time, lifetime time.Duration) (JWTKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return JWTKey{}, fmt.Errorf("ca: jwt key: %w", err)
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return JWTKey{}, fmt.Errorf("ca: jwt key: %w", err)
	}
	return JWTKey{ID: hex.EncodeToString(id[:]), Signer: k, NotAfter: now.Add(lifetime).Truncate(time.Second)}, nil
}

// PublicDER is the PKIX encoding of the key's public part, as published.
func (k JWTKey) PublicDER() ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k.Signer.Public())
	if err != nil {
		return nil, fmt.Errorf("ca: jwt key %s: %w", k.ID, err)
	}
	return der, nil
}

type jwtKeyState struct {
	key    JWTKey
	signer jose.Signer
}

// jwtKeys is embedded state of CA; the zero value has no key.
type jwtKeys struct{ p atomic.Pointer[jwtKeyState] }

// SetJWTKey atomically replaces the JWT signing key. The caller must have
// published its public part in the bundle first.
func (c *CA) SetJWTKey(k JWTKey) error {
	pub, ok := k.Signer.Public().(*ecdsa.PublicKey)
	if k.ID == "" || !ok || pub.Curve != elliptic.P256() || k.NotAfter.IsZero() {
		return fmt.Errorf("ca: jwt key: want a P-256 key with an id and an expiry: %w", ErrIssuer)
	}
	opaque := &es256Signer{key: k}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: opaque},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return fmt.Errorf("ca: jwt key: %w: %w", ErrIssuer, err)
	}
	c.jwt.p.Store(&jwtKeyState{key: k, signer: s})
	return nil
}

// JWTKeyID returns the ID of the current JWT signing key ("" when none).
func (c *CA) JWTKeyID() string {
	if st := c.jwt.p.Load(); st != nil {
		return st.key.ID
	}
	return ""
}

// JWTRequest asks for one JWT-SVID.
type JWTRequest struct {
	ID       spiffeid.ID
	Audience []string
	TTL      time.Duration // 0 = the grant's TTL; else within [MinTTL, MaxTTL]
}

// JWTResult is a signed, committed JWT-SVID. With an error, only EntryID
// may be set: the request was authorized by that entry and then failed.
type JWTResult struct {
	EntryID string // the entry that authorized it
	Token   string
	Expiry  time.Time
	Record  *record.Record
}

// MintJWT issues a JWT-SVID for caller: the ID is checked and authorized
// like an X509-SVID's, the audience is required, the TTL is bounded and the
// expiry capped at the key's. The issuance record (serial = jti, issuer =
// "jwt:" + kid, public key hash = SHA-256 of the token) is committed before
// the token is returned.
func (c *CA) MintJWT(ctx context.Context, caller spiffeid.ID, req JWTRequest) (out JWTResult, retErr error) {
	if err := ValidateWorkloadID(c.cfg.TrustDomain, req.ID); err != nil {
		return JWTResult{}, err
	}
	if err := validateAudience(req.Audience); err != nil {
		return JWTResult{}, err
	}
	grant, err := c.cfg.Authorizer.Authorize(caller, req.ID)
	if err != nil {
		c.log.LogAttrs(ctx, slog.LevelInfo, "ca: jwt-svid denied",
			slog.String("caller", caller.String()), slog.String("spiffe_id", req.ID.String()), slog.String("error", err.Error()))
		if errors.Is(err, ErrPermissionDenied) {
			return JWTResult{}, fmt.Errorf("ca: %s may not obtain %s: %w", caller, req.ID, err)
		}
		return JWTResult{}, fmt.Errorf("ca: authorize %s for %s: %w", caller, req.ID, err)
	}
	defer func() {
		if retErr != nil { // authorized, then failed: say by which entry (JWTResult.EntryID)
			out = JWTResult{EntryID: grant.EntryID}
		}
	}()
	ttl, err := c.resolveTTL(req.TTL, grant.TTL)
	if err != nil {
		return JWTResult{}, err
	}
	st := c.jwt.p.Load()
	if st == nil {
		return JWTResult{}, fmt.Errorf("ca: no jwt signing key: %w", ErrIssuer)
	}
	now := c.cfg.Clock().Truncate(time.Second)
	exp := now.Add(ttl)
	if exp.After(st.key.NotAfter) {
		exp = st.key.NotAfter
		if exp.Sub(now) < c.cfg.MinCappedTTL {
			return JWTResult{}, fmt.Errorf("ca: jwt key expires too soon (%s): %w", exp.UTC().Format(time.RFC3339), ErrIssuer)
		}
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return JWTResult{}, fmt.Errorf("ca: jwt id: %w: %v", ErrIssuer, err)
	}
	serial := new(big.Int).SetBytes(jti[:]).Text(16)
	claims := jwt.Claims{
		Issuer: c.cfg.JWTIssuer, Subject: req.ID.String(), Audience: jwt.Audience(req.Audience), ID: serial,
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(exp),
	}
	token, err := jwt.Signed(st.signer).Claims(claims).Serialize()
	if err != nil {
		return JWTResult{}, fmt.Errorf("ca: sign jwt-svid: %w: %v", ErrIssuer, err)
	}
	sum := sha256.Sum256([]byte(token))
	rec := &record.Record{
		Serial: serial, SPIFFEID: req.ID.String(), AgentID: idString(caller),
		NotBefore: record.Truncate(now), NotAfter: record.Truncate(exp),
		IssuerKeyID: "jwt:" + st.key.ID, PublicKeySHA256: hex.EncodeToString(sum[:]), NodeID: c.cfg.NodeID,
	}
	if err := c.commit(ctx, []*record.Record{rec}); err != nil {
		return JWTResult{}, err
	}
	return JWTResult{EntryID: grant.EntryID, Token: token, Expiry: exp, Record: rec}, nil
}

func validateAudience(aud []string) error {
	if len(aud) == 0 {
		return fmt.Errorf("ca: at least one audience is required: %w", ErrInvalidAudience)
	}
	if len(aud) > MaxAudiences {
		return fmt.Errorf("ca: %d audiences, at most %d: %w", len(aud), MaxAudiences, ErrInvalidAudience)
	}
	for i, a := range aud {
		switch {
		case a == "":
			return fmt.Errorf("ca: audience %d is empty: %w", i+1, ErrInvalidAudience)
		case len(a) > MaxAudienceBytes:
			return fmt.Errorf("ca: audience %d of %d bytes exceeds the limit of %d bytes: %w", i+1, len(a), MaxAudienceBytes, ErrInvalidAudience)
		}
	}
	return nil
}

// es256Signer adapts a crypto.Signer (an in-memory key today, an HSM or KMS
// key tomorrow) to go-jose: ES256 is a SHA-256 digest signed by P-256, with
// the signature as fixed-size r || s.
type es256Signer struct{ key JWTKey }

func (s *es256Signer) Public() *jose.JSONWebKey {
	return &jose.JSONWebKey{Key: s.key.Signer.Public(), KeyID: s.key.ID, Algorithm: string(jose.ES256), Use: "sig"}
}

func (s *es256Signer) Algs() []jose.SignatureAlgorithm { return []jose.SignatureAlgorithm{jose.ES256} }

func (s *es256Signer) SignPayload(payload []byte, alg jose.SignatureAlgorithm) ([]byte, error) {
	if alg != jose.ES256 {
		return nil, fmt.Errorf("ca: jwt: unsupported algorithm %s", alg)
	}
	digest := sha256.Sum256(payload)
	der, err := s.key.Signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, err
	}
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &sig); err != nil {
		return nil, fmt.Errorf("ca: jwt: signature: %w", err)
	}
	out := make([]byte, 64)
	sig.R.FillBytes(out[:32])
	sig.S.FillBytes(out[32:])
	return out, nil
}
