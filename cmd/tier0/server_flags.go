package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/internal/server"
	"github.com/tier0-ca/tier0/internal/server/decisions"
)

// serverFlags are the flags of `tier0 server`: they fill a server.Config
// (typed fields directly; the trust domain, --decisions and
// --on-journal-full are parsed in config).
type serverFlags struct {
	cfg           server.Config
	trustDomain   string
	decisions     string
	onJournalFull string
	attestors     map[string]*string // --attestor-NAME (attestor_flags.go)
}

func newServerCmd(g *globalFlags) *cobra.Command {
	f := &serverFlags{cfg: server.Defaults()}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a tier0 CA node (with no flags: a single-node dev CA in ./tier0-data)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config(g)
			if err != nil {
				return err
			}
			s, err := server.New(cfg)
			if err != nil {
				return err
			}
			return s.Run(cmd.Context())
		},
	}
	withConfigFile(cmd, g)
	f.register(cmd.Flags())
	return cmd
}

// config turns the flags into a server.Config.
func (f *serverFlags) config(g *globalFlags) (server.Config, error) {
	cfg := f.cfg
	td, err := spiffeid.TrustDomainFromString(f.trustDomain)
	if err != nil {
		return cfg, fmt.Errorf("--trust-domain: %w", err)
	}
	cfg.TrustDomain, cfg.DataDir, cfg.Logger = td, g.dataDir, g.logger()
	cfg.NodeAttestors = attestorSections(f.attestors)
	if cfg.Audit.Decisions, err = decisions.ParsePolicy(f.decisions); err != nil {
		return cfg, err
	}
	switch f.onJournalFull {
	case "keep-issuing", "fail-closed":
		cfg.Audit.FailClosed = f.onJournalFull == "fail-closed"
	default:
		return cfg, fmt.Errorf("--on-journal-full %q: want keep-issuing or fail-closed", f.onJournalFull)
	}
	return cfg, nil
}

func (f *serverFlags) register(fl *pflag.FlagSet) {
	c, d := &f.cfg, server.Defaults()
	fl.StringVar(&f.trustDomain, "trust-domain", "example.org", "SPIFFE trust domain of this CA")
	fl.StringVar(&c.NodeID, "node-id", d.NodeID, "this node's ID (its SVID is spiffe://TD/tier0/node/ID)")
	fl.StringVar(&c.Listen, "listen", d.Listen, "gRPC (TLS) listen address for agents, operators and auditors")
	fl.StringVar(&c.HTTPListen, "http", d.HTTPListen, "plain HTTP listen address for /healthz, /readyz and /metrics")
	fl.StringVar(&c.Store, "store", "", "record store DSN: sqlite:PATH or postgres://... (default sqlite:DATA/records.db)")
	fl.BoolVar(&c.StoreOptional, "store-optional", false, "start even if the record store is unreachable: issue, keep records in the journal and connect in the background (default: refuse to start)")
	fl.DurationVar(&c.AgentTTL, "agent-ttl", d.AgentTTL, "agent SVID lifetime (15m..1h)")
	fl.IntVar(&c.MaxInFlight, "max-in-flight", d.MaxInFlight, "mint calls served at once (default 16 x cores, and at most 512 SVIDs per core in flight)")
	fl.IntVar(&c.MaxQueue, "max-queue", d.MaxQueue, "mint calls queued before ResourceExhausted")
	fl.IntVar(&c.MaxBatch, "max-batch", d.MaxBatch, "items per MintX509SVIDs call")
	fl.IntVar(&c.MaxPendingPerSource, "max-pending-per-source", d.MaxPendingPerSource, "API connections one source (IPv4 address or IPv6 /64) may have open before their TLS handshake ends; more are closed at once")
	fl.DurationVar(&c.HandshakeTimeout, "handshake-timeout", d.HandshakeTimeout, "an API connection must finish its TLS and HTTP/2 handshake within this")
	fl.DurationVar(&c.IdleTimeout, "idle-timeout", d.IdleTimeout, "an API connection with no call for this long is closed (clients reconnect)")

	k := &c.Keys
	fl.StringVar(&k.Signer, "signer", "", "`URI` of the CA root key on first start: pkcs11:..., awskms:///..., gcpkms:..., soft:/path (default: a DEV-ONLY soft key in DATA/ca/root.key); later roots: tier0 ca prepare")
	fl.StringVar(&k.Mode, "signing-mode", "", "direct (the root key signs every SVID) or delegated (it signs short-lived in-memory intermediates); default: direct for pkcs11, delegated for awskms/gcpkms/soft")
	fl.DurationVar(&k.IntermediateTTL, "intermediate-ttl", d.Keys.IntermediateTTL, "delegated mode: intermediate lifetime (at least 6 x the 1h maximum SVID TTL)")
	fl.BoolVar(&k.AllowShort, "allow-short-intermediate", false, "TESTS ONLY: accept any --intermediate-ttl and issue SVIDs capped below 15m")
	_ = fl.MarkHidden("allow-short-intermediate")
	fl.Float64Var(&k.RateLimit, "signer-rate-limit", 0, "KMS signs per second from this node (default 500 AWS, 250 GCP; negative: unlimited)")
	fl.DurationVar(&k.Timeout, "signer-timeout", d.Keys.Timeout, "timeout of one CA key signature, retries included")
	fl.DurationVar(&k.RootTTL, "root-ttl", d.Keys.RootTTL, "lifetime of the root certificate made on first start")
	fl.DurationVar(&k.RootProbe, "root-probe-interval", d.Keys.RootProbe, "delegated mode: test-sign with the CA root key this often, so a dead HSM/KMS shows before the next intermediate rotation")
	fl.DurationVar(&k.PublishWindow, "ca-publish-window", d.Keys.PublishWindow, "`tier0 ca activate` refuses a prepared root published for less than this (without --force); at least 2 x the agents' bundle refresh")

	a := &c.Audit
	fl.StringVar(&a.Key, "audit-key", "", "signer URI of the audit key that signs checkpoints (pkcs11:, awskms:, gcpkms:, soft:); default soft:DATA/ca/audit.key (DEV-ONLY)")
	fl.IntVar(&a.CheckpointEvery, "checkpoint-every", d.Audit.CheckpointEvery, "sign a checkpoint every this many records")
	fl.DurationVar(&a.CheckpointInterval, "checkpoint-interval", d.Audit.CheckpointInterval, "sign a checkpoint at least this often while records arrive")
	fl.StringVar(&f.decisions, "decisions", "all", "record authorization decisions: all, deny, sample:RATE (all denials, RATE of allows, e.g. sample:0.01) or off")
	fl.IntVar(&a.MaxUnexported, "max-unexported", d.Audit.MaxUnexported, "records waiting for export above which the journal is full (0: no limit)")
	fl.StringVar(&f.onJournalFull, "on-journal-full", "keep-issuing", "when the journal is full: keep-issuing (alert only) or fail-closed (mint answers Unavailable)")
	fl.DurationVar(&a.CertTTL, "audit-cert-ttl", d.Audit.CertTTL, "lifetime of the audit key certificate (capped at the root's)")
	fl.IntVar(&a.DecisionsBuffer, "decisions-buffer", d.Audit.DecisionsBuffer, "decisions held in memory while the record store is unreachable (then dropped and counted)")

	cl := &c.Cluster
	fl.StringVar(&cl.RaftAddr, "raft-addr", "", "cluster mode: raft (mTLS, node SVIDs) listen address; empty: single node on an in-memory transport")
	fl.StringVar(&cl.Advertise, "raft-advertise", "", "raft address other nodes dial (default: --raft-addr)")
	fl.StringSliceVar(&cl.Join, "join", nil, "API address(es) of cluster members to join through (first start only)")
	fl.StringVar(&cl.JoinToken, "join-token", "", "node join token from tier0 token create --node ID (first start with --join)")
	fl.StringVar(&cl.JoinTokenFile, "join-token-file", "", "file holding the node join token (first start with --join); the node waits for it (and for --bundle), serving /livez and /readyz")
	fl.StringVar(&cl.BundleFile, "bundle", "", "trust bundle to verify the cluster with before this node has state (default DATA/bundle.pem)")
	fl.DurationVar(&cl.HeartbeatTimeout, "raft-heartbeat-timeout", d.Cluster.HeartbeatTimeout, "cluster mode: raft heartbeat timeout")
	fl.DurationVar(&cl.ElectionTimeout, "raft-election-timeout", d.Cluster.ElectionTimeout, "cluster mode: raft election timeout")
	fl.DurationVar(&cl.LeaderLease, "raft-leader-lease", d.Cluster.LeaderLease, "cluster mode: raft leader lease timeout")
	fl.Uint64Var(&cl.SnapshotThreshold, "raft-snapshot-threshold", d.Cluster.SnapshotThreshold, "raft log entries between snapshots")
	fl.DurationVar(&cl.SnapshotInterval, "raft-snapshot-interval", d.Cluster.SnapshotInterval, "how often raft checks --raft-snapshot-threshold")
	fl.Uint64Var(&cl.TrailingLogs, "raft-trailing-logs", d.Cluster.TrailingLogs, "raft log entries kept after a snapshot (a follower further behind gets the snapshot)")
	fl.DurationVar(&cl.ApplyTimeout, "raft-apply-timeout", d.Cluster.ApplyTimeout, "how long a write waits for the leader and quorum before Unavailable")
	fl.DurationVar(&cl.WaitTimeout, "cluster-wait-timeout", d.Cluster.WaitTimeout, "a member waiting for a leader exits when no other member has answered it for this long (0: wait without limit)")
	fl.IntVar(&cl.ForwardsInFlight, "forwards-in-flight", d.Cluster.ForwardsInFlight, "follower: record batches forwarded to the leader concurrently")
	fl.IntVar(&c.RaftWALSegmentMB, "raft-wal-segment-size-mb", d.RaftWALSegmentMB, "size of a raft log segment file in MiB (1-1024), preallocated when the segment opens: the free disk space the raft log needs")
	fl.DurationVar(&cl.ForwardLinger, "forward-linger", d.Cluster.ForwardLinger, "follower: wait up to this long (max 5ms) for more records before forwarding a small batch while others are in flight; 0: never wait")

	fl.StringVar(&c.Pprof, "pprof", "", "serve net/http/pprof on this address (loopback only; empty: off)")
	fl.StringVar(&c.BundleEndpoint.Addr, "bundle-endpoint", "", "serve the SPIFFE bundle endpoint on this address (empty: off); https_spiffe profile with the node SVID unless --bundle-endpoint-cert is set")
	fl.StringVar(&c.BundleEndpoint.CertFile, "bundle-endpoint-cert", "", "https_web profile: PEM certificate chain (Web PKI) the bundle endpoint presents")
	fl.StringVar(&c.BundleEndpoint.KeyFile, "bundle-endpoint-key", "", "https_web profile: PEM private key of --bundle-endpoint-cert")
	fl.StringVar(&c.FederationWebRoots, "federation-web-roots", "", "PEM roots that authenticate https_web federation endpoints (default: the system roots)")
	fl.StringVar(&c.OIDC.Addr, "oidc-discovery", "", "serve the OIDC discovery document and the JWT-SVID keys (JWKS) on this HTTPS address (empty: off); needs --oidc-issuer, --oidc-cert, --oidc-key")
	fl.StringVar(&c.OIDC.Issuer, "oidc-issuer", "", "public https URL of the OIDC discovery provider; JWT-SVIDs carry it as iss (set the same on every node)")
	fl.StringVar(&c.OIDC.CertFile, "oidc-cert", "", "PEM certificate chain (Web PKI) the OIDC discovery provider presents")
	fl.StringVar(&c.OIDC.KeyFile, "oidc-key", "", "PEM private key of --oidc-cert")
	f.attestors = registerAttestorFlags(fl)
}
