package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
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
func newClusterNode(ctx context.Context, td spiffeid.TrustDomain, dir, nodeID string, cfg Cluster, log *slog.Logger) (*clusterNode, error) {
	c := &clusterNode{td: td, dir: dir, nodeID: nodeID, cfg: cfg, log: log, svid: client.NewRotatingSVID(nil)}
	bf := cfg.BundleFile
	if bf == "" {
		bf = filepath.Join(dir, "bundle.pem")
	}
	if b, err := client.LoadBundleFile(bf, td); err == nil {
		c.fileB = b
	} else if len(cfg.Join) > 0 {
		return nil, fmt.Errorf("cluster: --join needs the cluster's trust bundle (--bundle): %w", err)
	}
	if svid, err := client.LoadSVIDFiles(filepath.Join(nodeCredDir(dir), "svid.pem"), filepath.Join(nodeCredDir(dir), "key.pem")); err == nil {
		if time.Now().After(svid.Certificates[0].NotAfter) {
			log.Warn("cluster: the stored node SVID has expired; peers will refuse this node until it rejoins with a new --join-token", "not_after", svid.Certificates[0].NotAfter)
		} else {
			c.svid.Set(svid)
		}
	}
	c.firstBoot = len(cfg.Join) == 0 && !hasRaftState(dir)
	_, statErr := os.Stat(joinedMarker(dir))
	c.joining = len(cfg.Join) > 0 && statErr != nil
	if c.joining {
		if err := c.attest(ctx); err != nil {
			return nil, err
		}
	}
	t, err := ha.NewTLSTransport(ha.TLSConfig{
		BindAddr: cfg.RaftAddr, Advertise: cfg.Advertise, TrustDomain: td,
		SVID: c.svid, Bundle: bundleFunc(c.bundle), Logger: log,
	})
	if err != nil {
		return nil, err
	}
	c.trans = t
	c.fwd = ha.NewPeerForwarder(t.DialPeer)
	return c, nil
}

// attest exchanges the node join token for a node SVID (Bootstrap service,
// server-authenticated TLS against the bundle file).
func (c *clusterNode) attest(ctx context.Context) error {
	if c.cfg.JoinToken == "" {
		if _, err := c.svid.GetX509SVID(); err == nil {
			return nil // a valid stored node SVID (an earlier join that did not finish)
		}
		return errors.New("cluster: --join needs --join-token on first start (`tier0 token create --node ID` on the cluster)")
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
	resp, err := cl.Bootstrap().AttestJoinToken(ctx, &tier0v1.AttestJoinTokenRequest{Token: c.cfg.JoinToken, Csr: csr})
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
