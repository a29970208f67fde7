package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/atomicfile"
	"github.com/tier0-ca/tier0/internal/operator"
	"github.com/tier0-ca/tier0/internal/roles"
)

// Cluster mode (see ha/DESIGN.md "Cluster"). With a raft address the node
// speaks raft over mTLS with node SVIDs. Without Join it bootstraps a
// one-voter cluster (and mints its own node SVID from its CA, as a single
// node does); with Join it first exchanges the join token for a node SVID
// over the Bootstrap service, then asks the cluster to add it as a voter.
type clusterNode struct {
	td        spiffeid.TrustDomain
	dir       string
	nodeID    string
	cfg       Cluster
	log       *slog.Logger
	svid      *client.RotatingSVID
	trans     *ha.TLSTransport
	fwd       *ha.PeerForwarder
	joining   bool // first start with Join: attest, then join after raft starts
	firstBoot bool // first start of the bootstrapping node: it creates the CA root

	mu    sync.Mutex
	node  *ha.Node
	fileB *x509bundle.Bundle
	bseq  uint64
	nodeB *x509bundle.Bundle
}

func nodeCredDir(dir string) string { return filepath.Join(dir, "node") }

// joinedMarker exists once this node has been added to a cluster.
func joinedMarker(dir string) string { return filepath.Join(dir, "node", "joined") }

// newClusterNode loads or obtains the node SVID and opens the transport.
func newClusterNode(ctx context.Context, td spiffeid.TrustDomain, dir, nodeID string, cfg Cluster, lis net.Listener, log *slog.Logger, phase func(string)) (*clusterNode, error) {
	c := &clusterNode{td: td, dir: dir, nodeID: nodeID, cfg: cfg, log: log, svid: client.NewRotatingSVID(nil)}
	c.firstBoot = len(cfg.Join) == 0 && !hasRaftState(dir)
	_, statErr := os.Stat(joinedMarker(dir))
	c.joining = len(cfg.Join) > 0 && statErr != nil
	if err := c.loadBundle(ctx, phase); err != nil {
		return nil, err
	}
	if svid, err := client.LoadSVIDFiles(filepath.Join(nodeCredDir(dir), "svid.pem"), filepath.Join(nodeCredDir(dir), "key.pem")); err == nil {
		if time.Now().After(svid.Certificates[0].NotAfter) {
			log.Warn("cluster: the stored node SVID has expired; re-issuing it from the CA root key once raft is open", "not_after", svid.Certificates[0].NotAfter)
		} else {
			c.svid.Set(svid)
		}
	}
	if c.joining {
		if err := c.attest(ctx, phase); err != nil {
			return nil, err
		}
	}
	t, err := ha.NewTLSTransport(ha.TLSConfig{
		BindAddr: cfg.RaftAddr, Listener: lis, Advertise: cfg.Advertise, TrustDomain: td,
		SVID: c.svid, Bundle: bundleFunc(c.bundle), Logger: log,
	})
	if err != nil {
		return nil, err
	}
	c.trans = t
	c.fwd = ha.NewPeerForwarder(t.DialPeer)
	return c, nil
}

// loadBundle reads the bundle file (--bundle, else DATA/bundle.pem). A
// node joining for the first time waits for it (the file may be written
// once the first member is up: cold start); a member with state uses
// DATA/bundle.pem when --bundle is gone.
func (c *clusterNode) loadBundle(ctx context.Context, phase func(string)) error {
	files := []string{filepath.Join(c.dir, "bundle.pem")}
	if c.cfg.BundleFile != "" {
		files = append([]string{c.cfg.BundleFile}, files...)
	}
	load := func() error {
		var err error
		for _, f := range files {
			var b *x509bundle.Bundle
			if b, err = client.LoadBundleFile(f, c.td); err == nil {
				c.fileB = b
				return nil
			}
		}
		return err
	}
	err := load()
	switch {
	case err == nil || len(c.cfg.Join) == 0:
		return nil
	case !c.joining:
		return fmt.Errorf("cluster: --join needs the cluster's trust bundle (--bundle): %w", err)
	}
	return waitUntil(ctx, c.log, phase, "join: waiting for the cluster's trust bundle in "+files[0], func() (bool, error) {
		return load() == nil, nil
	}, func() []any { return []any{"hint", "write the first member's DATA/bundle.pem there"} })
}

// attest exchanges the node join token for a node SVID (Bootstrap service,
// server-authenticated TLS against the bundle file). With
// --join-token-file it waits for the file (cold start).
func (c *clusterNode) attest(ctx context.Context, phase func(string)) error {
	token := c.cfg.JoinToken
	if token == "" {
		if _, err := c.svid.GetX509SVID(); err == nil {
			return nil // a valid stored node SVID (an earlier join that did not finish)
		}
		f := c.cfg.JoinTokenFile
		if f == "" {
			return errors.New("cluster: --join needs --join-token or --join-token-file on first start (`tier0 token create --node ID` on the cluster)")
		}
		if err := waitUntil(ctx, c.log, phase, "join: waiting for the node join token in "+f, func() (bool, error) { return fileReady(f) },
			func() []any {
				return []any{"hint", "tier0 token create --node " + c.nodeID + " on a member, written to that file"}
			}); err != nil {
			return err
		}
		var err error
		if token, err = readTokenFile(f); err != nil {
			return err
		}
	}
	cl, err := client.New(ctx, client.Config{Addrs: c.cfg.Join, TrustDomain: c.td, Bundle: c.fileB})
	if err != nil {
		return err
	}
	defer cl.Close()
	csr, key, err := client.NewCSR(spiffeid.ID{})
	if err != nil {
		return err
	}
	resp, err := cl.Bootstrap().AttestJoinToken(ctx, &tier0v1.AttestJoinTokenRequest{Token: token, Csr: csr})
	if err != nil {
		return fmt.Errorf("cluster: attest node join token: %w", operator.Err(err))
	}
	svid, err := client.ParseChain(resp.GetChain(), key, c.fileB)
	if err != nil {
		return err
	}
	if name, ok := roles.NodeName(c.td, svid.ID); !ok || name != c.nodeID {
		return fmt.Errorf("cluster: the join token was for %s, not node %q (--node-id)", svid.ID, c.nodeID)
	}
	if err := client.WriteSVIDFiles(nodeCredDir(c.dir), svid, nil); err != nil {
		return fmt.Errorf("cluster: store node SVID: %w", err)
	}
	c.svid.Set(svid)
	c.log.Info("cluster: node SVID obtained with join token", "spiffe_id", svid.ID.String(), "not_after", svid.Certificates[0].NotAfter)
	return nil
}

// bundle is the transport's trust source: the replicated bundle once this
// node has one, else the bundle file.
func (c *clusterNode) bundle(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	c.mu.Lock()
	node := c.node
	c.mu.Unlock()
	if node != nil {
		b := node.Bundle()
		if len(b.Roots) > 0 {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.nodeB == nil || c.bseq != b.Sequence {
				var roots []*x509.Certificate
				for _, der := range b.Roots {
					if cert, err := x509.ParseCertificate(der); err == nil {
						roots = append(roots, cert)
					}
				}
				c.nodeB, c.bseq = x509bundle.FromX509Authorities(c.td, roots), b.Sequence
			}
			return c.nodeB.GetX509BundleForTrustDomain(td)
		}
	}
	if c.fileB == nil {
		return nil, errors.New("cluster: no trust bundle yet")
	}
	return c.fileB.GetX509BundleForTrustDomain(td)
}

// haConfig fills the cluster fields of cfg.
func (c *clusterNode) haConfig(cfg *ha.Config) {
	f := c.cfg
	cfg.Transport = c.trans
	cfg.Forwarder = c.fwd
	cfg.Bootstrap = len(f.Join) == 0
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = f.HeartbeatTimeout, f.ElectionTimeout, f.LeaderLease
	cfg.SnapshotThreshold, cfg.TrailingLogs, cfg.ApplyTimeout = f.SnapshotThreshold, f.TrailingLogs, f.ApplyTimeout
	cfg.SnapshotInterval = f.SnapshotInterval
	cfg.ForwardsInFlight, cfg.ForwardLinger = f.ForwardsInFlight, min(f.ForwardLinger, 5*time.Millisecond)
}

// peerServer is the node-to-node service (forwarded writes) for node.
func (c *clusterNode) peerServer(node *ha.Node) *grpc.Server {
	c.mu.Lock()
	c.node = node
	c.mu.Unlock()
	return ha.NewPeerServer(node, c.log)
}

// join asks the cluster to add this node (first start with Join only).
func (c *clusterNode) join(ctx context.Context) error {
	if !c.joining {
		return nil
	}
	cl, err := client.New(ctx, client.Config{Addrs: c.cfg.Join, TrustDomain: c.td, Bundle: c.fileB, SVID: c.svid, MaxAttempts: 10, Logger: c.log})
	if err != nil {
		return err
	}
	defer cl.Close()
	jctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	addr := string(c.trans.LocalAddr())
	if _, err := tier0v1.NewClusterClient(cl).ClusterJoin(jctx, &tier0v1.ClusterJoinRequest{NodeId: c.nodeID, RaftAddress: addr}); err != nil {
		return fmt.Errorf("cluster: join: %w", operator.Err(err))
	}
	if err := atomicfile.Write(joinedMarker(c.dir), []byte(addr+"\n"), 0o600); err != nil {
		return err
	}
	c.log.Info("cluster: joined as a voter", "raft_address", addr)
	return nil
}

func hasRaftState(dir string) bool {
	ents, err := os.ReadDir(filepath.Join(dir, "raft", "wal"))
	return err == nil && len(ents) > 0
}

// close closes the forwarder's connections (raft closes the transport).
func (c *clusterNode) close() { _ = c.fwd.Close() }

// bundleFunc adapts a function to x509bundle.Source.
type bundleFunc func(spiffeid.TrustDomain) (*x509bundle.Bundle, error)

func (f bundleFunc) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return f(td)
}
