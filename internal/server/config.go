package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/roles"
	"github.com/tier0-ca/tier0/internal/server/decisions"
	"github.com/tier0-ca/tier0/internal/server/keys"
)

// Config configures a node. Start from Defaults(): a zero duration or
// count is refused where `tier0 server` refuses it (New reports it with
// the flag's name), so that a Config and the flags mean the same.
type Config struct {
	TrustDomain spiffeid.TrustDomain // required
	NodeID      string               // its SVID is spiffe://TD/tier0/node/ID
	DataDir     string               // required; made absolute
	Listen      string               // gRPC (TLS) API; default 127.0.0.1:8443
	HTTPListen  string               // plain HTTP /healthz, /readyz, /metrics; default 127.0.0.1:8080

	Store         string // record store DSN; default sqlite:DATA/records.db
	StoreOptional bool   // start even if the store is unreachable (it connects in the background)

	AgentTTL    time.Duration // agent SVID lifetime, 15m..1h
	MaxInFlight int           // mint calls served at once; 0: api's default
	MaxQueue    int           // mint calls queued before ResourceExhausted
	MaxBatch    int           // items per MintX509SVIDs call

	MaxPendingPerSource int           // API connections one source may have open before their TLS handshake ends
	HandshakeTimeout    time.Duration // an API connection must finish its TLS and HTTP/2 handshake within this
	IdleTimeout         time.Duration // an API connection with no call for this long is closed

	Pprof              string         // net/http/pprof address (loopback only); "": off
	BundleEndpoint     BundleEndpoint // SPIFFE bundle endpoint; Addr "": off
	OIDC               OIDCDiscovery  // OIDC discovery provider (oidc.go); Addr "": off
	FederationWebRoots string         // PEM file of roots for https_web federation endpoints; "": the system's

	// NodeAttestors enables node attestors (internal/nodeattest): attestor
	// name -> its YAML section (`--attestor-NAME`).
	NodeAttestors map[string]string

	Keys    keys.Settings
	Audit   Audit
	Cluster Cluster

	// RaftWALSegmentMB is the size of a raft log segment file in MiB
	// (1..1024), preallocated when the segment opens: the free disk space
	// the raft log needs to go on (ha/DESIGN.md "Storage faults").
	RaftWALSegmentMB int

	Logger   *slog.Logger         // default slog.Default()
	Registry *prometheus.Registry // default: a new one with the Go and process collectors
}

// BundleEndpoint configures the SPIFFE bundle endpoint: https_spiffe (the
// node SVID) unless CertFile and KeyFile name a Web PKI certificate.
type BundleEndpoint struct {
	Addr, CertFile, KeyFile string
}

// Audit configures the audit key, checkpoints, decisions and the journal
// limit (docs/AUDIT.md).
type Audit struct {
	Key                string        // signer URI of the audit key; "": a DEV-ONLY soft key in DATA/ca/audit.key
	CertTTL            time.Duration // audit key certificate lifetime (capped at the root's)
	CheckpointEvery    int           // records between signed checkpoints
	CheckpointInterval time.Duration // at most this long between checkpoints while records arrive
	Decisions          decisions.Policy
	DecisionsBuffer    int  // decisions held while the store is unreachable; 0: the default
	MaxUnexported      int  // records waiting for export above which the journal is full; 0: no limit
	FailClosed         bool // refuse to issue while the journal is full (default: keep issuing)
}

// Cluster configures cluster mode (ha/DESIGN.md "Cluster"); RaftAddr ""
// is a single node on an in-memory transport.
type Cluster struct {
	RaftAddr          string   // raft (mTLS) listen address
	Advertise         string   // raft address other nodes dial; default RaftAddr
	Join              []string // API addresses of members to join through (first start only)
	JoinToken         string   // node join token (first start with Join)
	JoinTokenFile     string   // file holding it, waited for (cold start); JoinToken wins
	BundleFile        string   // trust bundle before this node has state; default DATA/bundle.pem
	HeartbeatTimeout  time.Duration
	ElectionTimeout   time.Duration
	LeaderLease       time.Duration
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	ApplyTimeout      time.Duration
	ForwardsInFlight  int
	ForwardLinger     time.Duration // at most 5ms
	// WaitTimeout: how long a member waiting for a leader goes on while
	// no other member answers it before it exits (waitlimit.go); 0 waits
	// without limit.
	WaitTimeout time.Duration
}

// Enabled reports cluster mode.
func (c Cluster) Enabled() bool { return c.RaftAddr != "" }

// Defaults returns the settings of `tier0 server` with no flags (the flags'
// defaults), except TrustDomain and DataDir.
func Defaults() Config {
	return Config{
		NodeID: "node1", Listen: "127.0.0.1:8443", HTTPListen: "127.0.0.1:8080",
		AgentTTL: time.Hour, MaxQueue: 1024, MaxBatch: 256, RaftWALSegmentMB: ha.DefaultWALSegmentSize >> 20,
		MaxPendingPerSource: 64, HandshakeTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute,
		Keys: keys.Settings{IntermediateTTL: keys.DefaultIntermediateTTL, Timeout: keys.DefaultSignerTimeout, RootTTL: keys.DefaultRootTTL, RootProbe: keys.DefaultRootProbe, PublishWindow: keys.DefaultPublishWindow},
		Audit: Audit{CertTTL: 365 * 24 * time.Hour, CheckpointEvery: ha.DefaultCheckpointEvery, CheckpointInterval: ha.DefaultCheckpointInterval,
			Decisions: decisions.Policy{Mode: decisions.All, Rate: 1}, DecisionsBuffer: decisions.DefaultBuffer, MaxUnexported: 1_000_000},
		Cluster: Cluster{
			HeartbeatTimeout: 500 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond, LeaderLease: 250 * time.Millisecond,
			SnapshotThreshold: ha.DefaultSnapshotThreshold, SnapshotInterval: 120 * time.Second, TrailingLogs: ha.DefaultTrailingLogs,
			ApplyTimeout: ha.DefaultApplyTimeout, ForwardsInFlight: ha.DefaultForwardsInFlight, ForwardLinger: ha.DefaultForwardLinger,
			WaitTimeout: DefaultClusterWaitTimeout,
		},
	}
}

// validate checks cfg (messages name the `tier0 server` flags) and fills
// the defaults that have no meaningful zero.
func (c *Config) validate() error {
	if c.TrustDomain.IsZero() {
		return errors.New("--trust-domain: trust domain is required")
	}
	if c.AgentTTL < 15*time.Minute || c.AgentTTL > time.Hour {
		return fmt.Errorf("--agent-ttl %v outside bounds [15m0s, 1h0m0s]", c.AgentTTL)
	}
	if err := c.Keys.Validate(ca.DefaultMaxTTL); err != nil {
		return err
	}
	a := c.Audit
	if a.CheckpointEvery <= 0 || a.CheckpointInterval <= 0 {
		return errors.New("--checkpoint-every and --checkpoint-interval must be positive")
	}
	if a.MaxUnexported < 0 {
		return fmt.Errorf("--max-unexported %d: must be 0 (no limit) or positive", a.MaxUnexported)
	}
	if c.Audit.Decisions.Mode == "" {
		c.Audit.Decisions = decisions.Policy{Mode: decisions.All, Rate: 1}
	}
	if err := c.Audit.Decisions.Validate(); err != nil {
		return err
	}
	if _, err := roles.NodeID(c.TrustDomain, c.NodeID); err != nil {
		return fmt.Errorf("--node-id: %w", err)
	}
	if c.DataDir == "" {
		return errors.New("--data-dir: data dir is required")
	}
	if c.RaftWALSegmentMB < 1 || c.RaftWALSegmentMB > 1024 {
		return fmt.Errorf("--raft-wal-segment-size-mb %d: want 1..1024", c.RaftWALSegmentMB)
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	c.DataDir = abs
	if err := c.OIDC.validate(); err != nil {
		return err
	}
	if c.Pprof != "" {
		if err := loopbackOnly(c.Pprof); err != nil {
			return err
		}
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8443"
	}
	if c.HTTPListen == "" {
		c.HTTPListen = "127.0.0.1:8080"
	}
	if c.Store == "" {
		c.Store = "sqlite:" + filepath.Join(c.DataDir, "records.db")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// loopbackOnly refuses a --pprof address that is not loopback: profiles
// expose memory contents.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--pprof: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--pprof %s: only a loopback address is allowed", addr)
	}
	return nil
}
