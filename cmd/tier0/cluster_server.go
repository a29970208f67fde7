package main

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

	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/atomicfile"
	"github.com/tier0-ca/tier0/internal/roles"
)

// Cluster mode (see ha/DESIGN.md "Cluster"). With --raft-addr the node
// speaks raft over mTLS with node SVIDs. Without --join it bootstraps a
// one-voter cluster (and mints its own node SVID from its CA, as a single
// node does); with --join it first exchanges --join-token for a node SVID
// over the Bootstrap service, then asks the cluster to add it as a voter.
type clusterFlags struct {
	raftAddr    string
	advertise   string
	join        []string
	joinToken   string
	bundleFile  string
	heartbeat   time.Duration
	election    time.Duration
	lease       time.Duration
	snapshotThr uint64
	snapshotInt time.Duration
	trailing    uint64
	applyTO     time.Duration
	fwdInFlight int
	fwdLinger   time.Duration
}

func (c *clusterFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&c.raftAddr, "raft-addr", "", "cluster mode: raft (mTLS, node SVIDs) listen address; empty: single node on an in-memory transport")
	fl.StringVar(&c.advertise, "raft-advertise", "", "raft address other nodes dial (default: --raft-addr)")
	fl.StringSliceVar(&c.join, "join", nil, "API address(es) of cluster members to join through (first start only)")
	fl.StringVar(&c.joinToken, "join-token", "", "node join token from tier0 token create --node ID (first start with --join)")
	fl.StringVar(&c.bundleFile, "bundle", "", "trust bundle to verify the cluster with before this node has state (default DATA/bundle.pem)")
	fl.DurationVar(&c.heartbeat, "raft-heartbeat-timeout", 500*time.Millisecond, "cluster mode: raft heartbeat timeout")
	fl.DurationVar(&c.election, "raft-election-timeout", 500*time.Millisecond, "cluster mode: raft election timeout")
	fl.DurationVar(&c.lease, "raft-leader-lease", 250*time.Millisecond, "cluster mode: raft leader lease timeout")
	fl.Uint64Var(&c.snapshotThr, "raft-snapshot-threshold", ha.DefaultSnapshotThreshold, "raft log entries between snapshots")
	fl.DurationVar(&c.snapshotInt, "raft-snapshot-interval", 120*time.Second, "how often raft checks --raft-snapshot-threshold")
	fl.Uint64Var(&c.trailing, "raft-trailing-logs", ha.DefaultTrailingLogs, "raft log entries kept after a snapshot (a follower further behind gets the snapshot)")
	fl.DurationVar(&c.applyTO, "raft-apply-timeout", ha.DefaultApplyTimeout, "how long a write waits for the leader and quorum before Unavailable")
	fl.IntVar(&c.fwdInFlight, "forwards-in-flight", ha.DefaultForwardsInFlight, "follower: record batches forwarded to the leader concurrently")
	fl.DurationVar(&c.fwdLinger, "forward-linger", ha.DefaultForwardLinger, "follower: wait up to this long (max 5ms) for more records before forwarding a small batch while others are in flight; 0: never wait")
}

func (c *clusterFlags) enabled() bool { return c.raftAddr != "" }

// clusterNode is the cluster-mode wiring around ha.Node.
type clusterNode struct {
	td        spiffeid.TrustDomain
	dir       string
	nodeID    string
	f         *clusterFlags
	log       *slog.Logger
	svid      *client.RotatingSVID
	trans     *ha.TLSTransport
	fwd       *ha.PeerForwarder
	peer      *grpc.Server
	joining   bool // first start with --join: attest, then join after raft starts
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
func newClusterNode(ctx context.Context, td spiffeid.TrustDomain, dir, nodeID string, f *clusterFlags, log *slog.Logger) (*clusterNode, error) {
	c := &clusterNode{td: td, dir: dir, nodeID: nodeID, f: f, log: log, svid: client.NewRotatingSVID(nil)}
	bf := f.bundleFile
	if bf == "" {
		bf = filepath.Join(dir, "bundle.pem")
	}
	if b, err := client.LoadBundleFile(bf, td); err == nil {
		c.fileB = b
	} else if len(f.join) > 0 {
		return nil, fmt.Errorf("cluster: --join needs the cluster's trust bundle (--bundle): %w", err)
	}
	if svid, err := client.LoadSVIDFiles(filepath.Join(nodeCredDir(dir), "svid.pem"), filepath.Join(nodeCredDir(dir), "key.pem")); err == nil {
		if time.Now().After(svid.Certificates[0].NotAfter) {
			log.Warn("cluster: the stored node SVID has expired; peers will refuse this node until it rejoins with a new --join-token", "not_after", svid.Certificates[0].NotAfter)
		} else {
			c.svid.Set(svid)
		}
	}
	c.firstBoot = len(f.join) == 0 && !hasRaftState(dir)
	_, statErr := os.Stat(joinedMarker(dir))
	c.joining = len(f.join) > 0 && statErr != nil
	if c.joining {
		if err := c.attest(ctx); err != nil {
			return nil, err
		}
	}
	t, err := ha.NewTLSTransport(ha.TLSConfig{
		BindAddr: f.raftAddr, Advertise: f.advertise, TrustDomain: td,
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
// server-authenticated TLS against --bundle).
func (c *clusterNode) attest(ctx context.Context) error {
	if c.f.joinToken == "" {
		if _, err := c.svid.GetX509SVID(); err == nil {
			return nil // a valid stored node SVID (an earlier join that did not finish)
		}
		return errors.New("cluster: --join needs --join-token on first start (`tier0 token create --node ID` on the cluster)")
	}
	cl, err := client.New(ctx, client.Config{Addrs: c.f.join, TrustDomain: c.td, Bundle: c.fileB})
	if err != nil {
		return err
	}
	defer cl.Close()
	csr, key, err := client.NewCSR(spiffeid.ID{})
	if err != nil {
		return err
	}
	resp, err := cl.Bootstrap().AttestJoinToken(ctx, &tier0v1.AttestJoinTokenRequest{Token: c.f.joinToken, Csr: csr})
	if err != nil {
		return fmt.Errorf("cluster: attest node join token: %w", cliErr(err))
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
// node has one, else the --bundle file.
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
	cfg.Transport = c.trans
	cfg.Forwarder = c.fwd
	cfg.Bootstrap = len(c.f.join) == 0
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = c.f.heartbeat, c.f.election, c.f.lease
	cfg.SnapshotThreshold, cfg.TrailingLogs, cfg.ApplyTimeout = c.f.snapshotThr, c.f.trailing, c.f.applyTO
	cfg.SnapshotInterval = c.f.snapshotInt
	cfg.ForwardsInFlight, cfg.ForwardLinger = c.f.fwdInFlight, min(c.f.fwdLinger, 5*time.Millisecond)
}

// start serves the peer service and, on first start with --join, asks the
// cluster to add this node, then waits until the CA state has replicated.
func (c *clusterNode) start(ctx context.Context, node *ha.Node) error {
	c.mu.Lock()
	c.node = node
	c.mu.Unlock()
	c.peer = ha.NewPeerServer(node, c.log)
	go func() { _ = c.peer.Serve(c.trans.PeerListener()) }()
	if c.joining {
		if err := c.requestJoin(ctx); err != nil {
			return err
		}
	}
	// A joining or restarting member must see the replicated CA root
	// before the key manager looks at it (it would otherwise create one).
	if !c.firstBoot {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if _, ok := node.CAState().Active(); ok {
				break
			}
			if time.Now().After(deadline) {
				return errors.New("cluster: no CA root replicated from the cluster within 2m")
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

func hasRaftState(dir string) bool {
	ents, err := os.ReadDir(filepath.Join(dir, "raft", "wal"))
	return err == nil && len(ents) > 0
}

func (c *clusterNode) requestJoin(ctx context.Context) error {
	cl, err := client.New(ctx, client.Config{Addrs: c.f.join, TrustDomain: c.td, Bundle: c.fileB, SVID: c.svid, MaxAttempts: 10, Logger: c.log})
	if err != nil {
		return err
	}
	defer cl.Close()
	jctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	addr := string(c.trans.LocalAddr())
	if _, err := tier0v1.NewClusterClient(cl).ClusterJoin(jctx, &tier0v1.ClusterJoinRequest{NodeId: c.nodeID, RaftAddress: addr}); err != nil {
		return fmt.Errorf("cluster: join: %w", cliErr(err))
	}
	if err := atomicfile.Write(joinedMarker(c.dir), []byte(addr+"\n"), 0o600); err != nil {
		return err
	}
	c.log.Info("cluster: joined as a voter", "raft_address", addr)
	return nil
}

// close stops the peer server and the forwarder's connections (raft closes
// the transport).
func (c *clusterNode) close() {
	if c.peer != nil {
		c.peer.Stop()
	}
	_ = c.fwd.Close()
}

// bundleFunc adapts a function to x509bundle.Source.
type bundleFunc func(spiffeid.TrustDomain) (*x509bundle.Bundle, error)

func (f bundleFunc) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return f(td)
}
