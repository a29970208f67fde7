package signer

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tier0-ca/tier0/signer/awskms"
	"github.com/tier0-ca/tier0/signer/gcpkms"
	"github.com/tier0-ca/tier0/signer/internal/errs"
	"github.com/tier0-ca/tier0/signer/internal/health"
	"github.com/tier0-ca/tier0/signer/internal/keyalg"
	"github.com/tier0-ca/tier0/signer/internal/kmsctl"
	"github.com/tier0-ca/tier0/signer/soft"
)

// Signer is a CA signing key. Public never does I/O (the public key is read
// at Open). Sign uses Options.Timeout; SignContext also honours ctx.
type Signer interface {
	crypto.Signer
	// SignContext is Sign bounded by ctx as well as Options.Timeout.
	SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error)
	// KeyID names the key for logs and issuance records (a URI or ARN
	// without module paths, PIN sources or endpoints).
	KeyID() string
	// Health reports whether the key can sign now (see Health).
	Health() Health
	// Close releases sessions and connections; later signs fail with ErrClosed.
	Close() error
}

// Sentinel errors; test with errors.Is.
var (
	ErrClosed = errs.ErrClosed // Sign after Close
	// ErrUnavailable is wrapped by every *UnavailableError: the CA key
	// cannot sign now (breaker open, device or KMS failing, throttled, timed out).
	ErrUnavailable = errs.ErrUnavailable
	ErrThrottled   = errs.ErrThrottled // KMS still throttling after MaxRetries retries
	ErrKMS         = errs.ErrKMS       // KMS still failing (5xx, unreachable) after MaxRetries retries
	ErrChecksum    = errs.ErrChecksum  // KMS response failed its CRC32C check (after retries)
	ErrTimeout     = errs.ErrTimeout   // Sign exceeded Options.Timeout
	ErrDevice      = errs.ErrDevice    // PKCS#11 device or module fault
	ErrUnknownURI  = errors.New("signer: unknown key URI scheme (want pkcs11:, awskms:, gcpkms: or soft:)")
)

// UnavailableError is the error of a sign that failed because the CA key
// cannot sign now; it wraps ErrUnavailable and the cause, and says when to
// retry (RetryAfter: the breaker's time to its next probe, or the
// throttling backoff). Its Error() carries the full cause, for logs;
// Public() is the client-safe message (no ARNs, account IDs, endpoints or
// key names).
type UnavailableError = errs.UnavailableError

// Health is a signer's health report: State, since when, the last
// availability error and, while Down, when the next recovery probe runs.
type Health = health.Health

// State is Up, Degraded (signing, but recently failing or throttled) or
// Down (the breaker is open: signs fail at once with *UnavailableError).
type State = health.State

// Health states.
const (
	Up       = health.Up
	Degraded = health.Degraded
	Down     = health.Down
)

// Default KMS client-side rate limits, in signs per second per node. AWS
// KMS allows 1,000 ECC Sign requests/s per account and region (shared by
// all nodes); GCP Cloud KMS allows 60,000 cryptographic requests/min
// (1,000/s) per project and region for software keys and less for HSM keys.
// Both defaults stay well under those so that a renewal storm is throttled
// here, smoothly, not by the KMS. Set Options.RateLimit from your real quota
// divided by the number of nodes.
const (
	DefaultAWSRateLimit = 500
	DefaultGCPRateLimit = 250
)

// Options tune a Signer. Zero values get the documented defaults.
type Options struct {
	// Timeout bounds each Sign call, KMS retries and waiting for a PKCS#11
	// session included. Default 5s.
	Timeout time.Duration
	// RateLimit is the KMS client-side limit in sign attempts per second
	// (retries included). Default DefaultAWSRateLimit / DefaultGCPRateLimit;
	// negative means unlimited. Ignored by pkcs11 and soft.
	RateLimit float64
	// Burst is the rate limiter's bucket size. Default RateLimit/10.
	Burst int
	// MaxRetries is how often a throttled or failed KMS call is retried,
	// with full-jitter exponential backoff. Default 4; negative means none.
	MaxRetries int
	// Sessions is the PKCS#11 session pool size. Default 4.
	Sessions int
	// Logger receives session recoveries, retries and circuit changes. It
	// never receives a PIN. Default: discard.
	Logger *slog.Logger
	// Registerer receives the tier0_signer_* metrics. Default: none.
	Registerer prometheus.Registerer
}

// Open opens the signing key named by uri; see the package documentation
// for the URI formats.
func Open(ctx context.Context, uri string, opts Options) (Signer, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	scheme, _, _ := strings.Cut(uri, ":")
	m := health.NewMetrics(opts.Registerer)
	var (
		s   Signer
		err error
	)
	switch scheme {
	case "soft":
		s, err = openSoft(uri)
	case "pkcs11":
		s, err = openPKCS11(ctx, uri, opts, m) // pkcs11_cgo.go; refused without cgo (pkcs11_nocgo.go)
	case "awskms":
		s, err = awskms.Open(ctx, uri, awskms.Config{Control: control(opts, "awskms", DefaultAWSRateLimit, m)})
	case "gcpkms":
		s, err = gcpkms.Open(ctx, uri, gcpkms.Config{Control: control(opts, "gcpkms", DefaultGCPRateLimit, m)})
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnknownURI, scheme)
	}
	if err != nil {
		return nil, err
	}
	m.Init(scheme) // every series exists, at zero, before the first error
	return &instrumented{s: s, backend: scheme, m: m}, nil
}

func openSoft(uri string) (Signer, error) {
	path, _ := strings.CutPrefix(uri, "soft:")
	path = strings.TrimPrefix(path, "//") // soft:///abs/path
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("signer/soft: want soft:/absolute/path/key.pem, got %q", uri)
	}
	return soft.Open(path)
}

func control(o Options, backend string, defRate float64, m *health.Metrics) kmsctl.Config {
	r := o.RateLimit
	if r == 0 {
		r = defRate
	}
	return kmsctl.Config{
		Backend:    backend,
		Rate:       r,
		Burst:      o.Burst,
		MaxRetries: o.MaxRetries,
		Timeout:    o.Timeout,
		Logger:     o.Logger,
		Metrics:    m,
	}
}

// instrumented adds the sign latency and error metrics to any backend.
type instrumented struct {
	s       Signer
	backend string
	m       *health.Metrics
}

func (i *instrumented) Public() crypto.PublicKey { return i.s.Public() }
func (i *instrumented) KeyID() string            { return i.s.KeyID() }
func (i *instrumented) Health() Health           { return i.s.Health() }
func (i *instrumented) Close() error             { return i.s.Close() }

func (i *instrumented) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return i.SignContext(context.Background(), digest, opts)
}

func (i *instrumented) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	start := time.Now()
	sig, err := i.s.SignContext(ctx, digest, opts)
	i.m.SignSeconds.WithLabelValues(i.backend).Observe(time.Since(start).Seconds())
	if err != nil {
		i.m.Errors.WithLabelValues(i.backend, ErrorKind(err)).Inc()
	}
	return sig, err
}

// ErrorKind classifies a Sign error for metrics and logs: throttled,
// circuit_open, timeout, unavailable (the reason of an *UnavailableError),
// checksum, closed, canceled or other.
func ErrorKind(err error) string {
	if r := errs.ReasonOf(err); r != "" {
		return r
	}
	switch {
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return errs.ReasonTimeout
	case errors.Is(err, ErrChecksum):
		return "checksum"
	case errors.Is(err, ErrClosed):
		return "closed"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "other"
}

// HashFor returns the digest a signature by the key pub uses: what
// crypto/x509 picks when the key signs a certificate (SHA-384 for P-384,
// SHA-512 for P-521, SHA-256 for P-256 and RSA). SelfTest, Probe and Bench
// sign digests of this hash, so a key that passes them can sign the CA's
// certificates.
func HashFor(pub crypto.PublicKey) crypto.Hash { return keyalg.HashFor(pub) }
