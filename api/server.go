// Package api serves tier0's gRPC services (Bootstrap, Agent, Admin, Audit)
// over TLS, authenticates callers by their X509-SVID, authorizes them by
// role, and is the one place where domain errors become status codes.
package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/ratelog"
	"github.com/tier0-ca/tier0/storage"
)

// Issuer mints SVIDs (implemented by *ca.CA).
type Issuer interface {
	MintBatch(ctx context.Context, caller spiffeid.ID, reqs []ca.Request) ([]ca.Result, error)
	MintFor(ctx context.Context, caller, id spiffeid.ID, csr []byte, ttl time.Duration) (ca.Result, error)
}

// State is the replicated CA state the API reads and changes (implemented
// by *ha.Node).
type State interface {
	CreateEntry(ctx context.Context, e ha.Entry) (ha.Entry, error)
	DeleteEntry(ctx context.Context, id string) error
	ListEntries(agent string) []ha.Entry
	EntriesFor(agent string) []ha.Entry
	CreateToken(ctx context.Context, tokenHash, agent string, expiresAt time.Time) error
	ConsumeToken(ctx context.Context, tokenHash string) (string, error)
	Bundle() ha.Bundle
}

// CheckpointTracker knows the newest checkpoint the record store must hold
// (implemented by ha.Node).
type CheckpointTracker interface {
	NewestExportedCheckpoint() uint64
}

// Records answers the Audit service's ListRecords (implemented by the
// storage stores).
type Records interface {
	Query(ctx context.Context, f storage.Filter) ([]*record.Record, error)
}

// Config configures a Server.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Issuer      Issuer
	State       State
	Records     Records           // may be nil: Audit answers Unavailable
	Audit       AuditReader       // may be nil: VerifyChain and ListDecisions answer Unavailable (audit.go)
	Checkpoints CheckpointTracker // may be nil: VerifyChain cannot tell that the newest checkpoint was deleted
	TreeLog     TreeLog           // may be nil: the AuditLog service answers Unavailable (auditlog.go)
	CA          CAManager         // may be nil: the CA root RPCs answer Unavailable
	SVID        x509svid.Source   // the node's own SVID, presented to clients
	JWT         JWTIssuer         // may be nil: MintJWTSVID answers Unavailable (jwt.go)
	Trust       TrustReader       // may be nil: GetBundle has no JWT keys or federated bundles
	Federation  FederationStore   // may be nil: the Federation service answers Unavailable
	Federator   *Federator        // may be nil: ListFederations shows no fetch errors
	Backup      BackupSource      // may be nil: the Backup service answers Unavailable (backup.go)
	Cluster     ClusterNode       // may be nil: the Cluster service answers Unavailable
	Decisions   DecisionRecorder  // may be nil: refused credentials and node attestations are only logged (agentadmin.go, nodeattest.go)
	// Node attestation (nodeattest.go): the enabled attestors and where
	// the outcome is recorded. With no attestors AttestAgent refuses
	// every attestor (PermissionDenied).
	NodeAttestors NodeAttestors
	Attestations  AttestationRecorder
	Logger        *slog.Logger // default slog.Default()
	Registerer    prometheus.Registerer

	AgentTTL        time.Duration // agent SVID lifetime, default 1h
	DefaultEntryTTL time.Duration // entry TTL when none is given, default 30m
	MinTTL, MaxTTL  time.Duration // default 15m, 1h
	TokenTTL        time.Duration // default join token lifetime, 1h
	MaxTokenTTL     time.Duration // default 24h
	MaxBatch        int           // items per MintX509SVIDs call, default 256
	MaxInFlight     int           // concurrently served mint calls, default 16*GOMAXPROCS (and at most 512*GOMAXPROCS items)
	MaxQueue        int           // mint calls waiting for a slot before ResourceExhausted, default 1024
	Clock           func() time.Time

	// Connection limits of the API port (Serve, conns.go). A connection
	// must finish its TLS and HTTP/2 handshake within HandshakeTimeout
	// (default 10s); one with no call in flight for IdleTimeout is closed
	// (default 5m; clients reconnect on their next call); at most
	// MaxPendingPerSource connections from one source (an IPv4 address or
	// an IPv6 /64) may be accepted and not yet through the TLS handshake:
	// more are closed at once and counted in
	// tier0_api_connections_refused_total (default 64).
	HandshakeTimeout    time.Duration
	IdleTimeout         time.Duration
	MaxPendingPerSource int
}

// Server implements the tier0 gRPC services.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	authn   *authn
	adm     *admission
	grpc    *grpc.Server
	pending *pendingLimiter
	// signerLog: "CA key unavailable" lines (errors.go), rate-limited.
	signerLog signerLog
	// lines: per-item and per-call failure lines, rate-limited (ratelog).
	lines *ratelog.Logger

	bmu       sync.Mutex
	bseq      uint64
	bundle    *x509bundle.Bundle
	bundleDER [][]byte
}

// New validates cfg, fills defaults and builds the gRPC server.
func New(cfg Config) (*Server, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("api: trust domain is required")
	}
	if cfg.Issuer == nil || cfg.State == nil || cfg.SVID == nil {
		return nil, errors.New("api: Issuer, State and SVID are required")
	}
	if cfg.HandshakeTimeout < 0 || cfg.IdleTimeout < 0 {
		return nil, fmt.Errorf("api: negative HandshakeTimeout %v or IdleTimeout %v", cfg.HandshakeTimeout, cfg.IdleTimeout)
	}
	setDefaults(&cfg)
	s := &Server{cfg: cfg, log: cfg.Logger}
	s.signerLog.Interval, s.signerLog.First = signerLogEvery, 1
	s.lines = ratelog.New(s.log, ratelog.DefaultEvery)
	s.metrics = newMetrics(cfg.Registerer)
	s.authn = &authn{td: cfg.TrustDomain, bundles: s.currentBundle, cache: map[[32]byte]cachedID{}, check: s.checkCredential}
	s.adm = newAdmission(cfg.MaxInFlight, cfg.MaxQueue, s.metrics)
	s.pending = newPendingLimiter(cfg.MaxPendingPerSource, s.metrics)
	tlsCfg := s.tlsConfig()
	s.grpc = grpc.NewServer(
		grpc.Creds(handshakeCreds{credentials.NewTLS(tlsCfg)}),
		grpc.ConnectionTimeout(cfg.HandshakeTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: cfg.IdleTimeout,
			// Probe a connection silent for 2m; close it if the probe is
			// not answered in 20s (a peer gone without a FIN).
			Time: 2 * time.Minute, Timeout: 20 * time.Second,
		}),
		grpc.ChainUnaryInterceptor(s.unaryAuth, s.unaryLimits),
		grpc.ChainStreamInterceptor(s.streamAuth, s.streamLimits),
		grpc.MaxRecvMsgSize(8<<20),
		// Refuse mint calls before their message is read when the
		// admission queue is full (tap.go).
		grpc.InTapHandle(s.tapMint),
		// Each connection's write buffer is released after a flush (grpc's
		// default since SharedWriteBuffer was deprecated), so a storm's
		// thousands of mostly idle agent connections do not hold one each.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	tier0v1.RegisterBootstrapServer(s.grpc, &bootstrapService{s: s})
	tier0v1.RegisterAgentServer(s.grpc, &agentService{s: s})
	tier0v1.RegisterAdminServer(s.grpc, &adminService{s: s})
	tier0v1.RegisterAuditServer(s.grpc, &auditService{s: s})
	tier0v1.RegisterAuditLogServer(s.grpc, &auditLogService{s: s})
	tier0v1.RegisterFederationServer(s.grpc, &federationService{s: s})
	tier0v1.RegisterBackupServer(s.grpc, &backupService{s: s})
	tier0v1.RegisterClusterServer(s.grpc, &clusterService{s: s})
	tier0v1.RegisterAgentAdminServer(s.grpc, &agentAdminService{s: s})
	tier0v1.RegisterOperatorServer(s.grpc, &operatorService{s: s})
	return s, nil
}

func setDefaults(cfg *Config) {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.MinTTL, 15*time.Minute)
	def(&cfg.MaxTTL, time.Hour)
	def(&cfg.AgentTTL, time.Hour)
	def(&cfg.DefaultEntryTTL, 30*time.Minute)
	def(&cfg.TokenTTL, time.Hour)
	def(&cfg.MaxTokenTTL, 24*time.Hour)
	def(&cfg.HandshakeTimeout, 10*time.Second)
	def(&cfg.IdleTimeout, 5*time.Minute)
	if cfg.MaxPendingPerSource <= 0 {
		cfg.MaxPendingPerSource = 64
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 256
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
}

// tlsConfig presents the node SVID and requests (but does not require) a
// client certificate: Bootstrap callers have none, and authn verifies the
// rest per method so errors are precise.
func (s *Server) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		ClientAuth:     tls.RequestClientCert,
		GetCertificate: tlsconfig.GetCertificate(s.cfg.SVID),
		NextProtos:     []string{"h2"},
	}
}

// currentBundle returns the parsed trust bundle, re-parsed only when the
// replicated bundle's sequence changes.
func (s *Server) currentBundle() *x509bundle.Bundle {
	b := s.cfg.State.Bundle()
	s.bmu.Lock()
	defer s.bmu.Unlock()
	if s.bundle != nil && b.Sequence == s.bseq {
		return s.bundle
	}
	var roots []*x509.Certificate
	for _, der := range b.Roots {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			s.log.Error("bundle holds an unparsable root", "err", err)
			continue
		}
		roots = append(roots, c)
	}
	s.bundle = x509bundle.FromX509Authorities(s.cfg.TrustDomain, roots)
	s.bundleDER = b.Roots
	s.bseq = b.Sequence
	return s.bundle
}

// Serve serves gRPC on lis until Stop, bounding the connections of each
// source that are not through the TLS handshake yet (conns.go).
func (s *Server) Serve(lis net.Listener) error {
	if err := s.grpc.Serve(&limitListener{Listener: lis, l: s.pending}); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("api: serve: %w", err)
	}
	return nil
}

// Stop stops gracefully, waiting at most d for in-flight calls.
func (s *Server) Stop(d time.Duration) {
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		s.grpc.Stop()
	}
}
