package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/api"
	"github.com/tier0-ca/tier0/api/client"
	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/atomicfile"
	"github.com/tier0-ca/tier0/internal/roles"
)

type serverFlags struct {
	trustDomain string
	nodeID      string
	listen      string
	httpListen  string
	store       string
	storeOpt    bool // --store-optional: start even if the store is unreachable
	agentTTL    time.Duration
	maxInFlight int
	maxQueue    int
	maxBatch    int
	maxPending  int           // --max-pending-per-source: connections per IP not through TLS yet
	handshakeTO time.Duration // --handshake-timeout
	idleTO      time.Duration // --idle-timeout
	pprof       string
	bundleAddr  string // SPIFFE bundle endpoint (https_spiffe), "" = off
	bundleCert  string // https_web: Web PKI certificate chain (PEM) for the bundle endpoint
	bundleKey   string // https_web: its private key (PEM)
	webRoots    string // https_web peers: PEM roots to trust instead of the system's
	keys        keyFlags
	audit       auditFlags   // audit_server.go
	cluster     clusterFlags // cluster_server.go
}

// serverInfo is written to DATA/server.json so the CLI finds the server.
type serverInfo struct {
	TrustDomain string   `json:"trust_domain"`
	Servers     []string `json:"servers"`
	NodeID      string   `json:"node_id"`
	HTTP        string   `json:"http"`
	PID         int      `json:"pid"`
}

func newServerCmd(g *globalFlags) *cobra.Command {
	f := &serverFlags{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a tier0 CA node (with no flags: a single-node dev CA in ./tier0-data)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServer(cmd.Context(), g, f)
		},
	}
	withConfigFile(cmd, g)
	fl := cmd.Flags()
	fl.StringVar(&f.trustDomain, "trust-domain", "example.org", "SPIFFE trust domain of this CA")
	fl.StringVar(&f.nodeID, "node-id", "node1", "this node's ID (its SVID is spiffe://TD/tier0/node/ID)")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8443", "gRPC (TLS) listen address for agents, operators and auditors")
	fl.StringVar(&f.httpListen, "http", "127.0.0.1:8080", "plain HTTP listen address for /healthz, /readyz and /metrics")
	fl.StringVar(&f.store, "store", "", "record store DSN: sqlite:PATH or postgres://... (default sqlite:DATA/records.db)")
	fl.BoolVar(&f.storeOpt, "store-optional", false, "start even if the record store is unreachable: issue, keep records in the journal and connect in the background (default: refuse to start)")
	fl.DurationVar(&f.agentTTL, "agent-ttl", time.Hour, "agent SVID lifetime (15m..1h)")
	fl.IntVar(&f.maxInFlight, "max-in-flight", 0, "mint calls served at once (default 16 x cores, and at most 512 SVIDs per core in flight)")
	fl.IntVar(&f.maxQueue, "max-queue", 1024, "mint calls queued before ResourceExhausted")
	fl.IntVar(&f.maxBatch, "max-batch", 256, "items per MintX509SVIDs call")
	fl.IntVar(&f.maxPending, "max-pending-per-source", 64, "API connections one source (IPv4 address or IPv6 /64) may have open before their TLS handshake ends; more are closed at once")
	fl.DurationVar(&f.handshakeTO, "handshake-timeout", 10*time.Second, "an API connection must finish its TLS and HTTP/2 handshake within this")
	fl.DurationVar(&f.idleTO, "idle-timeout", 5*time.Minute, "an API connection with no call for this long is closed (clients reconnect)")
	f.keys.register(fl)
	f.audit.register(fl)
	f.cluster.register(fl)
	fl.StringVar(&f.pprof, "pprof", "", "serve net/http/pprof on this address (loopback only; empty: off)")
	fl.StringVar(&f.bundleAddr, "bundle-endpoint", "", "serve the SPIFFE bundle endpoint on this address (empty: off); https_spiffe profile with the node SVID unless --bundle-endpoint-cert is set")
	fl.StringVar(&f.bundleCert, "bundle-endpoint-cert", "", "https_web profile: PEM certificate chain (Web PKI) the bundle endpoint presents")
	fl.StringVar(&f.bundleKey, "bundle-endpoint-key", "", "https_web profile: PEM private key of --bundle-endpoint-cert")
	fl.StringVar(&f.webRoots, "federation-web-roots", "", "PEM roots that authenticate https_web federation endpoints (default: the system roots)")
	return cmd
}

func runServer(ctx context.Context, g *globalFlags, f *serverFlags) error {
	log := g.logger()
	td, err := spiffeid.TrustDomainFromString(f.trustDomain)
	if err != nil {
		return fmt.Errorf("--trust-domain: %w", err)
	}
	if f.agentTTL < 15*time.Minute || f.agentTTL > time.Hour {
		return fmt.Errorf("--agent-ttl %v outside bounds [15m0s, 1h0m0s]", f.agentTTL)
	}
	if err := f.keys.validate(ca.DefaultMaxTTL); err != nil {
		return err
	}
	if err := f.audit.validate(); err != nil {
		return err
	}
	nodeSPIFFE, err := roles.NodeID(td, f.nodeID)
	if err != nil {
		return fmt.Errorf("--node-id: %w", err)
	}
	dir := g.dataDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	log.Info("starting tier0", "data_dir", dir, "trust_domain", td.Name(), "node_id", f.nodeID)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	hcfg := ha.Config{NodeID: f.nodeID, DataDir: dir, Bootstrap: true, Registerer: reg, Logger: log}
	var cl *clusterNode
	leaderWait := 30 * time.Second
	if f.cluster.enabled() {
		if cl, err = newClusterNode(ctx, td, dir, f.nodeID, &f.cluster, log); err != nil {
			return err
		}
		defer cl.close()
		cl.haConfig(&hcfg)
		leaderWait = 2 * time.Minute // the other members may be starting too
	}
	node, err := ha.New(ctx, hcfg)
	if err != nil {
		return err
	}
	defer node.Close()
	if cl != nil {
		if err := cl.start(ctx, node); err != nil {
			return err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, leaderWait)
	err = node.WaitLeader(wctx)
	cancel()
	if err != nil {
		return fmt.Errorf("raft: no leader: %w", err)
	}
	registerRaftGauges(reg, node)
	keys := newKeyManager(td, dir, &f.keys, ca.DefaultMaxTTL, node, log, reg)
	firstIssuer, err := keys.Start(ctx)
	if err != nil {
		return err
	}

	authz := &entryAuthorizer{td: td, entries: node}
	aud := newAuditWiring(&f.audit, td, dir, f.nodeID, log, reg)
	issuer, err := ca.New(ca.Config{
		TrustDomain: td, Issuer: firstIssuer, NodeID: f.nodeID, MinCappedTTL: f.keys.minCappedTTL(),
		Authorizer: aud.authorizer(authz), Journal: aud.journal(node), Logger: log, MaxBatch: f.maxBatch,
	})
	if err != nil {
		return err
	}

	jwt := &jwtKeys{node: node, ca: issuer, nodeID: f.nodeID, lifetime: 24 * time.Hour, log: log}
	jwtKey, err := jwt.start(ctx)
	if err != nil {
		return err
	}

	dsn := f.store
	if dsn == "" {
		dsn = "sqlite:" + filepath.Join(dir, "records.db")
	}
	store, err := openServerStore(ctx, dsn, f.storeOpt, log)
	if err != nil {
		return err
	}
	defer store.Close()

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go jwt.run(runCtx, jwtKey)
	if err := aud.start(runCtx, node, keys, store); err != nil {
		return err
	}
	exporterDone := make(chan struct{})
	go func() {
		defer close(exporterDone)
		if err := node.RunExporter(runCtx, store); err != nil && runCtx.Err() == nil {
			log.Error("exporter stopped", "err", err)
		}
	}()

	// Credentials: the node SVID (memory) and the operator and auditor SVIDs (files).
	nodeSVID, nodeDir := client.NewRotatingSVID(nil), ""
	if cl != nil { // the raft transport presents it too; keep it for restarts
		nodeSVID, nodeDir = cl.svid, nodeCredDir(dir)
	}
	creds := []*selfCred{
		{ca: issuer, id: nodeSPIFFE, ttl: time.Hour, dir: nodeDir, set: nodeSVID.Set, log: log},
		{ca: issuer, id: roles.AdminID(td), ttl: time.Hour, dir: filepath.Join(dir, "admin"), log: log},
		{ca: issuer, id: roles.AuditorID(td), ttl: time.Hour, dir: filepath.Join(dir, "auditor"), log: log},
	}
	for _, c := range creds {
		if err := c.mint(ctx); err != nil {
			return err
		}
		go c.run(runCtx)
	}
	if err := atomicfile.Write(filepath.Join(dir, "bundle.pem"), pemCerts(node.Bundle().Roots...), 0o644); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	keys.Attach(runCtx, issuer, func(b ha.Bundle) {
		if err := atomicfile.Write(filepath.Join(dir, "bundle.pem"), pemCerts(b.Roots...), 0o644); err != nil {
			log.Error("write bundle", "err", err)
		}
	})

	federator, err := startFederator(runCtx, node, f.webRoots, log)
	if err != nil {
		return err
	}
	srv, err := api.New(api.Config{
		TrustDomain: td, Issuer: issuer, State: node, Records: store, Audit: store, Checkpoints: node, SVID: nodeSVID, CA: keys, JWT: issuer, Trust: node,
		Federation: node, Federator: federator, Cluster: node,
		Backup: &backupSource{node: node, nodeID: f.nodeID, dir: keys.dir},
		Logger: log, Registerer: reg, AgentTTL: f.agentTTL,
		MaxInFlight: f.maxInFlight, MaxQueue: f.maxQueue, MaxBatch: f.maxBatch,
		MaxPendingPerSource: f.maxPending, HandshakeTimeout: f.handshakeTO, IdleTimeout: f.idleTO,
	})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	hlis, err := net.Listen("tcp", f.httpListen)
	if err != nil {
		lis.Close()
		return fmt.Errorf("listen http: %w", err)
	}
	servers := []string{lis.Addr().String()}
	if cl != nil {
		servers = append(servers, f.cluster.join...) // the CLI fails over between them
	}
	info, _ := json.MarshalIndent(serverInfo{TrustDomain: td.Name(), Servers: servers, NodeID: f.nodeID, HTTP: hlis.Addr().String(), PID: os.Getpid()}, "", "  ")
	if err := atomicfile.Write(filepath.Join(dir, "server.json"), info, 0o644); err != nil {
		return err
	}
	hsrv := api.HTTPServer(healthMux(node, reg))
	go func() {
		if err := hsrv.Serve(hlis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	if f.bundleAddr != "" {
		if err := serveBundleEndpoint(runCtx, f, td, node, nodeSVID, log); err != nil {
			return err
		}
	}
	if f.pprof != "" {
		if err := servePprof(runCtx, f.pprof, log); err != nil {
			return err
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	log.Info("tier0 ready", "api", lis.Addr().String(), "http", hlis.Addr().String(),
		"bundle", filepath.Join(dir, "bundle.pem"), "admin_credential", filepath.Join(dir, "admin"))

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-errc:
	}
	srv.Stop(10 * time.Second)
	shctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = hsrv.Shutdown(shctx)
	cancel()
	stop()
	<-exporterDone
	return err
}

// entryAuthorizer grants an agent the SPIFFE IDs its registration entries
// name (default deny). It reads the node's local copy of Raft state.
type entryAuthorizer struct {
	td      spiffeid.TrustDomain
	entries interface{ EntriesFor(agent string) []ha.Entry }
}

func (a *entryAuthorizer) Authorize(agent, id spiffeid.ID) (ca.Grant, error) {
	name, ok := roles.AgentName(a.td, agent)
	if !ok {
		return ca.Grant{}, fmt.Errorf("%w: %s is not an agent of %s", ca.ErrPermissionDenied, agent, a.td)
	}
	want := id.String()
	for _, e := range a.entries.EntriesFor(name) {
		if e.SPIFFEID == want {
			return ca.Grant{EntryID: e.ID, TTL: e.TTL}, nil
		}
	}
	return ca.Grant{}, fmt.Errorf("%w: no entry grants %s to agent %q", ca.ErrPermissionDenied, want, name)
}

func healthMux(node *ha.Node, reg *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := node.Status()
		if st.Leader == "" {
			http.Error(w, "no raft leader", http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintf(w, "ok: leader %s\n", st.Leader)
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

func (g *globalFlags) logger() *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(g.logLevel))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}
