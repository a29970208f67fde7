// Package client is the Go client of the tier0 API: TLS configuration with
// SPIFFE authorization of the server (node SVIDs only), failover across the
// nodes of a cluster, retry-after handling, join-token bootstrap, and the
// file formats agents and operators keep their credentials in.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	t0backoff "github.com/tier0-ca/tier0/internal/backoff"
	"github.com/tier0-ca/tier0/internal/redact"
	"github.com/tier0-ca/tier0/internal/roles"
)

// DefaultAddr is the address of a tier0 server on its embedded defaults.
const DefaultAddr = "127.0.0.1:8443"

// maxRecvMsgSize bounds one response: room for the largest page of records
// the Audit API returns (10,000, a few KiB each with the certificate).
const maxRecvMsgSize = 64 << 20

// RetryAfterKey is the trailer in which the server hints, on
// ResourceExhausted (overloaded) and Unavailable (CA key unavailable), how
// many milliseconds to wait before retrying.
const RetryAfterKey = "retry-after-ms"

const (
	defaultDialTimeout = 5 * time.Second
	maxRetryAfter      = 30 * time.Second
	maxRoundBackoff    = 5 * time.Second
)

// Config configures a Client.
type Config struct {
	// Addrs are the server addresses (host:port); calls fail over between
	// them. Empty means DefaultAddr.
	Addrs []string
	// TrustDomain of the servers; they must present spiffe://TD/tier0/node/<id>.
	TrustDomain spiffeid.TrustDomain
	// Bundle holds the roots the server's SVID is verified against.
	Bundle x509bundle.Source
	// SVID is the caller's credential for mTLS; nil for bootstrap-only
	// (server-authenticated TLS).
	SVID x509svid.Source
	// DialTimeout bounds each connection attempt. Default 5s.
	DialTimeout time.Duration
	// MaxAttempts bounds the attempts of one call across all addresses.
	// Default: twice the number of addresses, at least 3.
	MaxAttempts int
	// Logger receives failover and retry events. Default: discard.
	Logger *slog.Logger
}

// Client is a connection to a tier0 cluster. It dials lazily and
// implements grpc.ClientConnInterface, so any generated tier0v1 client can
// be built on it; unary calls fail over between the configured addresses.
//
// Calls are retried on codes.Unavailable (connection errors included) and on
// codes.ResourceExhausted that carries a retry-after hint. A retry-after
// hint on any answer (ResourceExhausted: overloaded; Unavailable: the
// node's CA key cannot sign; or a success whose items partly failed so)
// also holds every other call of the Client to that address for about the
// hint (gate.go), while other addresses stay open. A retried call may
// have reached a server whose answer was lost: callers that must not repeat
// a side effect should use a context with a single-address Client.
//
// A connection keeps the SVID it handshook with; a long-lived Client should
// be recreated after its SVID is rotated.
type Client struct {
	addrs       []string
	conns       []*grpc.ClientConn
	maxAttempts int
	log         *slog.Logger
	pick        func(n int) int // index of the first address to try
	jitter      func() float64  // uniform in [0,1)
	sleep       func(ctx context.Context, d time.Duration) error
	gates       []*gate // per address (gate.go)
}

var _ grpc.ClientConnInterface = (*Client)(nil)

// New returns a Client for cfg. It does not connect: the first call does.
func New(ctx context.Context, cfg Config) (*Client, error) {
	_ = ctx // connections are made lazily, per call
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("client: trust domain is required")
	}
	if cfg.Bundle == nil {
		return nil, errors.New("client: bundle is required")
	}
	addrs := cfg.Addrs
	if len(addrs) == 0 {
		addrs = []string{DefaultAddr}
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = defaultDialTimeout
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = max(3, 2*len(addrs))
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	authz := roles.AuthorizeNode(cfg.TrustDomain)
	tlsConf := tlsconfig.TLSClientConfig(cfg.Bundle, authz)
	if cfg.SVID != nil {
		tlsConf = tlsconfig.MTLSClientConfig(cfg.SVID, cfg.Bundle, authz)
	}
	base := time.Now()
	c := &Client{
		addrs:       addrs,
		maxAttempts: cfg.MaxAttempts,
		log:         log,
		pick:        rand.IntN,
		jitter:      rand.Float64,
		sleep:       t0backoff.Sleep,
	}
	for _, addr := range addrs {
		if addr == "" {
			c.Close()
			return nil, errors.New("client: empty server address")
		}
		cc, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(credentials.NewTLS(tlsConf)),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 10 * time.Second},
				MinConnectTimeout: cfg.DialTimeout,
			}),
			// List and audit answers (up to 10,000 records with their
			// certificates) exceed gRPC's default 4 MiB receive limit.
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize)),
		)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("client: dial %s: %w", redact.URL(addr), redact.Err(err))
		}
		c.conns = append(c.conns, cc)
		c.gates = append(c.gates, &gate{base: base})
	}
	return c, nil
}

// Close closes every connection.
func (c *Client) Close() error {
	var errs []error
	for _, cc := range c.conns {
		errs = append(errs, cc.Close())
	}
	return errors.Join(errs...)
}

// Agent returns the agent service (needs an agent SVID).
func (c *Client) Agent() tier0v1.AgentClient { return tier0v1.NewAgentClient(c) }

// Admin returns the operator service (needs the admin SVID).
func (c *Client) Admin() tier0v1.AdminClient { return tier0v1.NewAdminClient(c) }

// Audit returns the compliance service (needs the auditor or admin SVID).
func (c *Client) Audit() tier0v1.AuditClient { return tier0v1.NewAuditClient(c) }

// Bootstrap returns the join-token service (no SVID needed).
func (c *Client) Bootstrap() tier0v1.BootstrapClient { return tier0v1.NewBootstrapClient(c) }

// Invoke performs a unary call with failover; it returns the last gRPC
// status error unchanged, so status.Code works on it.
func (c *Client) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	n := len(c.conns)
	next := c.pick(n)
	var err error
	for attempt := 0; attempt < c.maxAttempts; attempt++ {
		i, gerr := c.choose(ctx, next)
		if gerr != nil {
			if err != nil {
				return err // a server's own answer says more than the gate's
			}
			return gerr
		}
		var trailer metadata.MD
		err = c.conns[i].Invoke(ctx, method, args, reply, append(opts, grpc.Trailer(&trailer))...)
		if err == nil {
			if d, ok := RetryAfter(trailer); ok {
				c.gates[i].hold(d, codes.Unavailable) // some items failed for a reason that holds for d
			}
			return nil
		}
		if !c.retryable(err, i, trailer) || attempt+1 >= c.maxAttempts || ctx.Err() != nil {
			return err
		}
		next = (i + 1) % n
		var wait time.Duration
		if _, hinted := RetryHint(err, trailer); status.Code(err) == codes.Unavailable && !hinted && (attempt+1)%n == 0 {
			// Every address failed once: back off before the next round.
			round := min((attempt+1)/n-1, 5)
			wait = c.jittered(min(maxRoundBackoff, 200*time.Millisecond<<round), 0.2)
		}
		c.log.WarnContext(ctx, "tier0 call failed, retrying",
			"method", method, "addr", redact.URL(c.addrs[i]), "attempt", attempt+1, "wait", wait, "err", redact.Error(err))
		if wait > 0 {
			if serr := c.sleep(ctx, wait); serr != nil {
				return status.FromContextError(serr).Err()
			}
		}
	}
	return err
}

// NewStream opens a stream on one address, without failover (the tier0 API
// has no streaming calls today).
func (c *Client) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.conns[c.pick(len(c.conns))].NewStream(ctx, desc, method, opts...)
}

// retryable reports whether err from address i may be retried on the next
// address. A refusal with a retry-after hint closes i's gate for that long.
func (c *Client) retryable(err error, i int, trailer metadata.MD) bool {
	code := status.Code(err)
	d, hinted := RetryHint(err, trailer)
	if hinted && (code == codes.Unavailable || code == codes.ResourceExhausted) {
		c.gates[i].hold(d, code)
	}
	switch code {
	case codes.Unavailable:
		return true
	case codes.ResourceExhausted:
		return hinted
	default:
		return false
	}
}

// jittered returns d scaled by a uniform factor in [1-frac, 1+frac).
func (c *Client) jittered(d time.Duration, frac float64) time.Duration {
	return t0backoff.Scale(d, frac, c.jitter())
}

// RetryHint is the server's retry hint for an answer: the retry-after-ms
// trailer, or else a google.rpc.RetryInfo detail of err's status (what a
// server sends when it refuses a call before reading it), capped at 30s.
func RetryHint(err error, md metadata.MD) (time.Duration, bool) {
	if d, ok := RetryAfter(md); ok {
		return d, true
	}
	if err == nil {
		return 0, false
	}
	st, ok := status.FromError(err)
	if !ok {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			if delay := ri.GetRetryDelay().AsDuration(); delay >= 0 {
				return min(delay, maxRetryAfter), true
			}
		}
	}
	return 0, false
}

// RetryAfter reads the retry-after-ms hint from a trailer, capped at 30s.
func RetryAfter(md metadata.MD) (time.Duration, bool) {
	v := md.Get(RetryAfterKey)
	if len(v) == 0 {
		return 0, false
	}
	ms, err := strconv.ParseInt(v[0], 10, 64)
	if err != nil || ms < 0 {
		return 0, false
	}
	return min(time.Duration(ms)*time.Millisecond, maxRetryAfter), true
}
