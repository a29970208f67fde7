package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/tier0-ca/tier0/internal/tlog"

	"github.com/tier0-ca/tier0/api"
	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/atomicfile"
	"github.com/tier0-ca/tier0/internal/nodeattest"
	"github.com/tier0-ca/tier0/internal/roles"
	"github.com/tier0-ca/tier0/internal/server/authz"
	"github.com/tier0-ca/tier0/internal/server/decisions"
	"github.com/tier0-ca/tier0/internal/server/journal"
	"github.com/tier0-ca/tier0/internal/server/keys"
	"github.com/tier0-ca/tier0/internal/serverinfo"
	"github.com/tier0-ca/tier0/storage"
)

// run is one Run: what it has started, torn down by stop in order.
type run struct {
	s   *Server
	ctx context.Context // the start steps': ends with the caller's or at the first failure

	serving      *group // API, health and metrics, bundle endpoint, pprof
	loops        *group // background loops
	decisionLoop *group // the decision writer
	peers        *group // the cluster peer service

	lis, hlis, blis, plis net.Listener // bound, not yet served
	olis                  net.Listener // the OIDC discovery provider (oidc.go)
	rlis                  net.Listener // cluster mode: raft, until the transport takes it
	apiAddr, httpAddr     string
	bundleCert            *tls.Certificate
	oidcCert              *tls.Certificate
	webRoots              *x509.CertPool

	cluster   *clusterNode
	node      *ha.Node
	keys      *keys.Manager
	auditKey  *keys.AuditKey
	decisions *decisions.Log
	journal   *journal.Bounded
	ca        *ca.CA
	jwt       *keys.JWTKeys
	store     storage.AuditStore
	nodeSVID  *client.RotatingSVID
}

func (r *run) path(name string) string { return filepath.Join(r.s.cfg.DataDir, name) }

func (r *run) step(what string) { r.s.setPhase(phaseStarting + ": " + what) }

// start brings the node up, step by step; stop undoes whatever it did.
func (r *run) start() error {
	s, cfg := r.s, r.s.cfg
	if err := r.listen(); err != nil {
		return err
	}
	r.apiAddr, r.httpAddr = r.lis.Addr().String(), r.hlis.Addr().String()
	s.addrs.Store(&[2]string{r.apiAddr, r.httpAddr})
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	s.log.Info("starting tier0", "data_dir", cfg.DataDir, "trust_domain", cfg.TrustDomain.Name(), "node_id", cfg.NodeID)
	// Health and metrics first: a node waiting for its peers is visible.
	r.serveHTTP("http", &r.hlis, api.HTTPServer(s.healthMux(s.reg)), nil)
	if s.hooks.listening != nil {
		s.hooks.listening(r.apiAddr, r.httpAddr)
	}
	for _, step := range []struct {
		name string
		fn   func() error
	}{
		{"raft", r.startRaft},
		{"CA keys", r.startCA},
		{"record store and audit", r.startAudit},
		{"credentials", r.startCreds},
		{"API", r.startAPI},
	} {
		r.step(step.name)
		if err := step.fn(); err != nil {
			switch {
			case errors.Is(err, errNotServing):
			case errors.Is(err, ha.ErrDiverged):
				// A follower may latch only after WaitLeader (raft counts an
				// entry applied once handed to the FSM): a step's write
				// then meets the divergence.
				return r.diverged(err)
			case r.node != nil && r.node.ExportHealth() != nil:
				return r.notServing(phaseNotServing, "the record store was refused before this node could issue its own credentials, "+
					"until it is restarted with a store that continues its journal (see the refusal above)")
			}
			return err
		}
	}
	// DATA/server.json last: once it names this process, the CLI works.
	servers := []string{r.apiAddr}
	if cfg.Cluster.Enabled() {
		servers = append(servers, cfg.Cluster.Join...) // the CLI fails over between them
	}
	return serverinfo.Write(cfg.DataDir, serverinfo.Info{TrustDomain: cfg.TrustDomain.Name(), Servers: servers,
		NodeID: cfg.NodeID, HTTP: r.httpAddr, PID: os.Getpid()})
}

// errNotServing: the node cannot issue its own credentials (the record
// store was refused, ha.ErrStoreMismatch, or the node diverged replaying
// its raft log, ha.ErrDiverged); Run keeps it up, not ready.
var errNotServing = errors.New("server: not serving")

// notServing is how start ends when the node cannot issue its own
// credentials: it cannot serve TLS (its certificate is an SVID, and
// issuing is what fails), so it closes the API port (clients get
// Unavailable at once and fail over) and keeps only health and metrics,
// and the loops already running, until it is stopped. phase is what the
// "startup" readiness check reports; why goes to the log once.
func (r *run) notServing(phase, why string, args ...any) error {
	cfg := r.s.cfg
	r.s.setPhase(phase)
	for _, l := range []*net.Listener{&r.lis, &r.blis} {
		if *l != nil {
			_ = (*l).Close()
			*l = nil
		}
	}
	r.s.log.Error("tier0 NOT SERVING: "+why+"; /readyz, /healthz and /metrics only", append(args, "http", r.httpAddr)...)
	if err := serverinfo.Write(cfg.DataDir, serverinfo.Info{TrustDomain: cfg.TrustDomain.Name(), Servers: []string{},
		NodeID: cfg.NodeID, HTTP: r.httpAddr, PID: os.Getpid()}); err != nil {
		return err
	}
	return errNotServing
}

func (r *run) startRaft() error {
	s, cfg := r.s, r.s.cfg
	hcfg := ha.Config{NodeID: cfg.NodeID, DataDir: cfg.DataDir, Bootstrap: true, Registerer: s.reg, Logger: s.log, ExportCheck: true,
		WALSegmentSize: cfg.RaftWALSegmentMB << 20}
	if self, err := roles.NodeID(cfg.TrustDomain, cfg.NodeID); err == nil {
		hcfg.SelfID = self.String() // the actor of the changes this node makes on its own
	}
	if cfg.Cluster.Enabled() {
		rlis := r.rlis
		cl, err := newClusterNode(r.ctx, cfg.TrustDomain, cfg.DataDir, cfg.NodeID, cfg.Cluster, rlis, s.log, r.step)
		if err != nil {
			return err
		}
		r.rlis = nil // the transport's now
		r.cluster = cl
		cl.haConfig(&hcfg)
	}
	node, err := ha.New(r.ctx, hcfg)
	if err != nil {
		if r.cluster != nil {
			_ = r.cluster.trans.Close() // raft did not take it over
		}
		return err
	}
	r.node = node
	s.node.Store(node)
	if cl := r.cluster; cl != nil {
		peer, lis := cl.peerServer(node), cl.trans.PeerListener()
		tier0v1.RegisterClusterMemberPeerServer(peer, memberPeer{s: s})
		r.peers.Go("cluster peer service", func(ctx context.Context) error {
			return serveUntil(ctx, func() error { return peer.Serve(lis) }, func() { gracefulStop(peer, 5*time.Second) })
		})
		// An expired node SVID (a long stop) is re-issued from the CA key
		// before raft can reach anyone (noderecover.go).
		if err := cl.renewOffline(r.ctx, node, cfg.Keys.Timeout); err != nil {
			return err
		}
		if err := cl.join(r.ctx); err != nil {
			return err
		}
		// The other members may be starting too, in any order: wait for
		// them while any answers (coldstart.go, waitlimit.go).
		if err := waitLeaderAndRoot(r.ctx, node, s.log, r.step, !cl.firstBoot, r.peerWatch().check); err != nil {
			return err
		}
	} else {
		wctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
		defer cancel()
		if err := node.WaitLeader(wctx); err != nil {
			return fmt.Errorf("raft: no leader: %w", err)
		}
	}
	if err := node.Health(); errors.Is(err, ha.ErrDiverged) {
		return r.diverged(err)
	}
	return nil
}

// diverged ends the start of a node that met a raft entry it cannot apply:
// it cannot issue anything from a state that skipped a command (ha/DESIGN.md
// "Divergence latch"); the repair is in docs/OPERATIONS.md.
func (r *run) diverged(err error) error {
	return r.notServing(phaseDiverged, "this node cannot apply its raft log (see docs/OPERATIONS.md)", "err", err)
}

// startCA opens the CA keys (making the first root on a first start) and
// builds the CA with the entry authorizer, the decision log and the
// bounded journal.
func (r *run) startCA() error {
	s, cfg := r.s, r.s.cfg
	_, existed := r.node.CAState().Active()
	r.reportIgnored(existed)
	var err error
	r.keys, err = keys.New(keys.Config{Settings: cfg.Keys, TrustDomain: cfg.TrustDomain, DataDir: cfg.DataDir,
		MaxSVID: ca.DefaultMaxTTL, State: r.node, Logger: s.log, Registerer: s.reg, Journal: r.node})
	if err != nil {
		return err
	}
	first, err := r.keys.Start(r.ctx)
	if err != nil {
		return err
	}
	s.keys.Store(r.keys)
	r.decisions, err = decisions.New(decisions.Config{Policy: cfg.Audit.Decisions, NodeID: cfg.NodeID,
		Buffer: cfg.Audit.DecisionsBuffer, Logger: s.log, Registerer: s.reg})
	if err != nil {
		return err
	}
	r.journal, err = journal.New(journal.Config{Node: r.node, MaxUnexported: cfg.Audit.MaxUnexported,
		FailClosed: cfg.Audit.FailClosed, Logger: s.log, Registerer: s.reg})
	if err != nil {
		return err
	}
	s.jrnl.Store(r.journal)
	r.ca, err = ca.New(ca.Config{
		TrustDomain: cfg.TrustDomain, Issuer: first, NodeID: cfg.NodeID, MinCappedTTL: cfg.Keys.MinCappedTTL(),
		Authorizer: authz.New(cfg.TrustDomain, r.node), Journal: r.journal, Logger: s.log, MaxBatch: cfg.MaxBatch,
		JWTIssuer: cfg.OIDC.Issuer, RecordIssuers: true,
	})
	if err != nil {
		return err
	}
	r.jwt = &keys.JWTKeys{State: r.node, CA: r.ca, NodeID: cfg.NodeID, Logger: s.log}
	return r.jwt.Start(r.ctx)
}

// startAudit opens the record store and the audit key and starts the
// checkpointer, the exporter, the decision writer and the journal watch.
func (r *run) startAudit() error {
	s, cfg := r.s, r.s.cfg
	store, err := openStore(r.ctx, cfg.Store, cfg.StoreOptional, s.log)
	if err != nil {
		return err
	}
	if s.hooks.wrapStore != nil {
		store = s.hooks.wrapStore(store)
	}
	r.store = store
	if r.auditKey, err = r.keys.OpenAuditKey(r.ctx, cfg.Audit.Key, cfg.Audit.CertTTL); err != nil {
		return err
	}
	s.audit.Store(r.auditKey)
	s.log.Info("audit key ready", "key", r.auditKey.KeyID(), "checkpoint_every", cfg.Audit.CheckpointEvery, "checkpoint_interval", cfg.Audit.CheckpointInterval)
	node, ak := r.node, r.auditKey
	r.loops.Go("checkpointer", func(ctx context.Context) error {
		return node.RunCheckpointer(ctx, ha.CheckpointConfig{Signer: ak.Signer(), CertDER: ak.CertDER,
			Every: cfg.Audit.CheckpointEvery, Interval: cfg.Audit.CheckpointInterval, Registerer: s.reg})
	})
	if ts, ok := store.(tlog.SignerStore); ok { // treesigner.go
		r.loops.Go("tree-signer", func(ctx context.Context) error { return runTreeSigner(ctx, r, ts, ak) })
	}
	if dc, ok := store.(storage.DecisionChainStore); ok { // decision checkpoints (internal/server/decisions)
		ds, err := decisions.NewSigner(decisions.SignerConfig{Store: dc, Leader: node.IsLeader, Signer: ak.Signer(), CertDER: ak.CertDER,
			NodeID: cfg.NodeID, Interval: cfg.Audit.CheckpointInterval, Logger: s.log})
		if err != nil {
			return err
		}
		r.loops.Go("decision-signer", ds.Run)
	}
	r.loops.Go("exporter", func(ctx context.Context) error {
		err := node.RunExporter(ctx, store)
		if errors.Is(err, ha.ErrStoreMismatch) {
			// Logged by the exporter; the node stays up, not ready and
			// not issuing (the "record store" readiness check), so that
			// the reason stays visible.
			<-ctx.Done()
			return nil
		}
		return err
	})
	r.loops.Go("journal watch", r.journal.Run)
	r.decisionLoop.Go("decision log", func(ctx context.Context) error { return r.decisions.Run(ctx, store) })
	if s.hooks.loop != nil {
		r.loops.Go("test loop", s.hooks.loop)
	}
	return nil
}

// startCreds issues the node SVID (memory; also files in cluster mode,
// where raft presents it too) and the admin and auditor credentials
// (files), writes DATA/bundle.pem and starts the loops that keep them, the
// CA's issuer and the JWT keys current.
func (r *run) startCreds() error {
	s, cfg := r.s, r.s.cfg
	nodeID, err := roles.NodeID(cfg.TrustDomain, cfg.NodeID)
	if err != nil {
		return fmt.Errorf("--node-id: %w", err)
	}
	r.nodeSVID = client.NewRotatingSVID(nil)
	nodeDir := ""
	if r.cluster != nil { // keep it for restarts
		r.nodeSVID, nodeDir = r.cluster.svid, nodeCredDir(cfg.DataDir)
	}
	if err := r.commitPendingRecords(); err != nil { // noderecover.go
		return err
	}
	for _, c := range []*selfCred{
		{ca: r.ca, id: nodeID, ttl: nodeSVIDTTL, dir: nodeDir, set: r.nodeSVID.Set, log: s.log},
		{ca: r.ca, id: roles.AdminID(cfg.TrustDomain), ttl: time.Hour, dir: r.path("admin"), log: s.log},
		{ca: r.ca, id: roles.AuditorID(cfg.TrustDomain), ttl: time.Hour, dir: r.path("auditor"), log: s.log},
	} {
		if err := c.mint(r.ctx); err != nil {
			return err
		}
		r.loops.Go("renew "+c.id.String(), c.run)
	}
	writeBundle := func(b ha.Bundle) error {
		if err := atomicfile.Write(r.path("bundle.pem"), PEMCerts(b.Roots...), 0o644); err != nil {
			return fmt.Errorf("write bundle: %w", err)
		}
		return nil
	}
	if err := writeBundle(r.node.Bundle()); err != nil {
		return err
	}
	r.keys.Attach(r.ca, func(b ha.Bundle) {
		if err := writeBundle(b); err != nil {
			s.log.Error("write bundle", "err", err)
		}
	})
	r.loops.Go("key manager", r.keys.Run)
	r.loops.Go("jwt keys", r.jwt.Run)
	return nil
}

// startAPI starts the federation fetcher and serves the gRPC API, the
// bundle endpoint and pprof.
func (r *run) startAPI() error {
	s, cfg := r.s, r.s.cfg
	node := r.node
	fed, err := api.NewFederator(api.FederatorConfig{Store: r.node, Roots: r.webRoots, IsLeader: node.IsLeader, Logger: s.log})
	if err != nil {
		return err
	}
	r.loops.Go("federation fetcher", func(ctx context.Context) error { fed.Run(ctx); return nil })
	attestors, err := nodeattest.New(nodeattest.Config{TrustDomain: cfg.TrustDomain, Sections: cfg.NodeAttestors})
	if err != nil {
		return err
	}
	if en := attestors.Enabled(); len(en) > 0 {
		s.log.Info("node attestors enabled", "attestors", en)
	}
	srv, err := api.New(api.Config{
		NodeAttestors: attestors, Attestations: r.node,
		TrustDomain: cfg.TrustDomain, Issuer: r.ca, State: r.node, Records: r.store, Audit: r.store, Checkpoints: r.node, TreeLog: treeLogOf(r.store),
		SVID: r.nodeSVID, CA: r.keys, JWT: r.ca, Trust: r.node, Federation: r.node, Federator: fed, Cluster: r.clusterView(),
		Backup: &backupSource{node: r.node, nodeID: cfg.NodeID, dir: cfg.DataDir}, Decisions: r.decisions,
		Logger: s.log, Registerer: s.reg, AgentTTL: cfg.AgentTTL,
		MaxInFlight: cfg.MaxInFlight, MaxQueue: cfg.MaxQueue, MaxBatch: cfg.MaxBatch,
		MaxPendingPerSource: cfg.MaxPendingPerSource, HandshakeTimeout: cfg.HandshakeTimeout, IdleTimeout: cfg.IdleTimeout,
	})
	if err != nil {
		return err
	}
	lis := r.lis
	r.lis = nil
	r.serving.Go("api", func(ctx context.Context) error {
		return serveUntil(ctx, func() error { return srv.Serve(lis) }, func() { srv.Stop(10 * time.Second) })
	})
	if r.blis != nil {
		tlsCfg, profile := api.BundleEndpointTLS(r.nodeSVID), api.ProfileSPIFFE
		if r.bundleCert != nil {
			tlsCfg = &tls.Config{Certificates: []tls.Certificate{*r.bundleCert}, MinVersion: tls.VersionTLS12}
			profile = api.ProfileWeb
		}
		s.log.Info("bundle endpoint", "profile", profile)
		r.serveHTTP("bundle endpoint", &r.blis, api.HTTPServer(api.BundleEndpoint(cfg.TrustDomain, r.node, r.node, s.log)), tlsCfg)
	}
	if err := r.serveOIDC(); err != nil {
		return err
	}
	if r.plis != nil {
		r.serveHTTP("pprof", &r.plis, &http.Server{Handler: pprofMux(), ReadHeaderTimeout: 5 * time.Second}, nil)
	}
	return nil
}

// stop tears down what start did, in order: stop accepting (the API
// drains in-flight calls for up to 10 s), stop and join the background
// loops, write the pending decisions, close the keys, close the record
// store (nothing writes to it any more), then raft and the peer service.
func (r *run) stop() {
	log := r.s.log
	r.serving.Stop()
	r.loops.Stop()
	r.decisionLoop.Stop()
	closeLogged := func(what string, close func() error) {
		if err := close(); err != nil {
			log.Error("shutdown: close "+what, "err", err)
		}
	}
	if r.keys != nil {
		closeLogged("CA keys", r.keys.Close)
	}
	if r.auditKey != nil {
		closeLogged("audit key", r.auditKey.Close)
	}
	if r.store != nil {
		closeLogged("record store", r.store.Close)
	}
	// The peer service's listener is the raft transport's: it stops when
	// raft closes the transport.
	r.peers.cancel()
	if r.node != nil {
		closeLogged("raft", r.node.Close)
	}
	r.peers.Stop()
	if r.cluster != nil {
		r.cluster.close()
	}
	r.closeListeners()
}
