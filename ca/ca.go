package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/internal/ratelog"
)

// Defaults for zero Config fields.
const (
	DefaultMinTTL      = 15 * time.Minute
	DefaultMaxTTL      = 60 * time.Minute
	DefaultBackdate    = 10 * time.Second
	DefaultMaxCSRBytes = 16384
	DefaultMaxBatch    = 256
)

// Grant is what a registration entry allows: the entry and its SVID TTL
// (0 means the CA's MaxTTL).
type Grant struct {
	EntryID string
	TTL     time.Duration
}

// Authorizer decides whether agent may obtain an SVID for id. It returns an
// error wrapping ErrPermissionDenied when it may not; any other error is
// passed through wrapped (and is treated by api/ as internal).
type Authorizer interface {
	Authorize(agent, id spiffeid.ID) (Grant, error)
}

// Journal durably commits records (group commit happens inside the
// implementation). On success it has set Seq, CommittedAt, PrevHash and Hash
// on each record. On error nothing is returned to the client.
type Journal interface {
	Commit(ctx context.Context, recs []*record.Record) error
}

// Issuer is the key and certificate that sign SVIDs. Chain holds the
// certificates sent after the leaf: Cert first, then further intermediates,
// never the root; it is empty when Cert is itself the (self-signed) root.
type Issuer struct {
	Signer crypto.Signer
	Cert   *x509.Certificate
	Chain  []*x509.Certificate
}

// Config configures a CA. Zero values get the documented defaults.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Issuer      Issuer
	NodeID      string // recorded in every record
	Authorizer  Authorizer
	Journal     Journal
	MinTTL      time.Duration // default 15m
	MaxTTL      time.Duration // default 60m
	Backdate    time.Duration // NotBefore = now - Backdate; default 10s
	// MinCappedTTL is the shortest lifetime left to an SVID whose NotAfter
	// is capped at its issuer's; below it issuance fails. Default MinTTL.
	// Only tests with tiny delegated intermediates set it lower.
	MinCappedTTL time.Duration
	MaxCSRBytes  int // default 16384
	// JWTIssuer, when set, is the "iss" claim of every JWT-SVID: the public
	// URL of the OIDC discovery provider that publishes the keys (as SPIRE,
	// iss is absent unless configured). Every node must set the same.
	JWTIssuer string
	MaxBatch  int // default 256
	// RecordIssuers: the first batch each intermediate signs also commits
	// the intermediate's own record (issuerrecord.go), so that the log
	// chains every SVID to the bundle. The server sets it.
	RecordIssuers bool
	Clock         func() time.Time
	Logger        *slog.Logger // default slog.Default()
}

// CA issues X.509-SVIDs. It is safe for concurrent use.
type CA struct {
	cfg    Config
	log    *slog.Logger
	issuer atomic.Pointer[issuerState]
	lines  *ratelog.Logger // per-item failure lines (loglines.go)
	claims keyClaims       // idempotency keys being minted (idem.go)
	jwt    jwtKeys         // JWT-SVID signing key (jwt.go)
	signed atomic.Uint64   // SVIDs signed on the in-memory fast path (fastsign.go)
	// recorded: hex SubjectKeyId of an intermediate -> *issuerLog,
	// whether its record is in the journal (issuerrecord.go)
	recorded sync.Map
}

// issuerState is an Issuer with everything the hot path needs precomputed.
type issuerState struct {
	iss      Issuer
	chainDER [][]byte
	skiHex   string
}

// New validates cfg, fills defaults and returns a CA.
func New(cfg Config) (*CA, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, fmt.Errorf("ca: config: trust domain is required: %w", ErrInvalidID)
	}
	if cfg.NodeID == "" {
		return nil, fmt.Errorf("ca: config: node id is required")
	}
	if cfg.Authorizer == nil || cfg.Journal == nil {
		return nil, fmt.Errorf("ca: config: authorizer and journal are required")
	}
	if cfg.MinTTL == 0 {
		cfg.MinTTL = DefaultMinTTL
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.MinTTL < 0 || cfg.MinTTL > cfg.MaxTTL {
		return nil, fmt.Errorf("ca: config: ttl bounds [%s, %s] are invalid", cfg.MinTTL, cfg.MaxTTL)
	}
	if cfg.MinCappedTTL <= 0 || cfg.MinCappedTTL > cfg.MinTTL {
		cfg.MinCappedTTL = cfg.MinTTL
	}
	if cfg.Backdate == 0 {
		cfg.Backdate = DefaultBackdate
	}
	if cfg.Backdate < 0 {
		return nil, fmt.Errorf("ca: config: negative backdate %s", cfg.Backdate)
	}
	if cfg.MaxCSRBytes == 0 {
		cfg.MaxCSRBytes = DefaultMaxCSRBytes
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.MaxCSRBytes < 0 || cfg.MaxBatch < 0 {
		return nil, fmt.Errorf("ca: config: negative MaxCSRBytes or MaxBatch")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	c := &CA{cfg: cfg, log: cfg.Logger}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.lines = ratelog.New(c.log, ratelog.DefaultEvery)
	if err := c.SetIssuer(cfg.Issuer); err != nil {
		return nil, err
	}
	c.cfg.Issuer = Issuer{} // the atomic pointer is the only source of truth
	return c, nil
}

// SetIssuer atomically replaces the issuer. In-flight mints finish with the
// issuer they started with. It rejects an issuer that is not a CA with a
// SubjectKeyId and certSign usage, whose signer does not match the
// certificate, or whose Chain breaks the documented shape.
func (c *CA) SetIssuer(iss Issuer) error {
	st, err := newIssuerState(iss)
	if err != nil {
		return err
	}
	c.issuer.Store(st)
	return nil
}

// Issuer returns the current issuer.
func (c *CA) Issuer() Issuer { return c.issuer.Load().iss }

func newIssuerState(iss Issuer) (*issuerState, error) {
	cert := iss.Cert
	switch {
	case iss.Signer == nil || cert == nil:
		return nil, fmt.Errorf("ca: issuer: signer and certificate are required: %w", ErrIssuer)
	case !cert.BasicConstraintsValid || !cert.IsCA:
		return nil, fmt.Errorf("ca: issuer: certificate is not a CA: %w", ErrIssuer)
	case cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, fmt.Errorf("ca: issuer: certificate lacks certSign key usage: %w", ErrIssuer)
	case len(cert.SubjectKeyId) == 0:
		return nil, fmt.Errorf("ca: issuer: certificate has no SubjectKeyId: %w", ErrIssuer)
	}
	pub, ok := iss.Signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("ca: issuer: signer public key does not match certificate: %w", ErrIssuer)
	}
	selfSigned := bytes.Equal(cert.RawIssuer, cert.RawSubject) && cert.CheckSignatureFrom(cert) == nil
	switch {
	case selfSigned && len(iss.Chain) != 0:
		return nil, fmt.Errorf("ca: issuer: chain must be empty when the issuer is the root: %w", ErrIssuer)
	case !selfSigned && (len(iss.Chain) == 0 || !iss.Chain[0].Equal(cert)):
		return nil, fmt.Errorf("ca: issuer: chain must start with the issuer certificate: %w", ErrIssuer)
	}
	st := &issuerState{iss: iss, skiHex: hex.EncodeToString(cert.SubjectKeyId)}
	st.iss.Chain = append([]*x509.Certificate(nil), iss.Chain...)
	for _, ch := range iss.Chain {
		st.chainDER = append(st.chainDER, ch.Raw)
	}
	return st, nil
}
