package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/roles"
)

// ClusterNode is the raft node as the Cluster service sees it (implemented
// by *ha.Node).
type ClusterNode interface {
	Status() ha.Status
	AddVoter(ctx context.Context, id, addr string) error
	RemoveServer(ctx context.Context, id string) error
	TransferLeadership(ctx context.Context, id string) error
}

type clusterService struct {
	tier0v1.UnimplementedClusterServer
	s *Server
}

func (c *clusterService) node() (ClusterNode, error) {
	if c.s.cfg.Cluster == nil {
		return nil, status.Error(codes.Unavailable, "cluster management is not configured on this node")
	}
	return c.s.cfg.Cluster, nil
}

func (c *clusterService) ClusterStatus(ctx context.Context, _ *tier0v1.ClusterStatusRequest) (*tier0v1.ClusterStatusResponse, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	n, err := c.node()
	if err != nil {
		return nil, err
	}
	st := n.Status()
	resp := &tier0v1.ClusterStatusResponse{
		NodeId: st.NodeID, State: st.State, LeaderId: st.Leader, Term: st.Term,
		CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex, LastIndex: st.LastIndex,
		JournalSeq: st.Journal.Seq, ExportedSeq: st.Journal.ExportedSeq,
		ExportLag: st.Journal.Seq - st.Journal.ExportedSeq,
	}
	for _, m := range st.Servers {
		resp.Members = append(resp.Members, &tier0v1.ClusterMember{Id: m.ID, RaftAddress: m.Address, Suffrage: m.Suffrage, Leader: m.ID == st.Leader})
		if m.ID == st.Leader {
			resp.LeaderAddress = m.Address
		}
	}
	return resp, nil
}

// ClusterJoin adds a voter. A node may add only itself (its SVID names it).
func (c *clusterService) ClusterJoin(ctx context.Context, req *tier0v1.ClusterJoinRequest) (*tier0v1.ClusterJoinResponse, error) {
	const method = "ClusterJoin"
	caller := callerFrom(ctx)
	if caller.role == roles.Node && caller.name != req.GetNodeId() {
		return nil, status.Errorf(codes.PermissionDenied, "node %q may not add node %q", caller.name, req.GetNodeId())
	}
	if req.GetNodeId() == "" || req.GetRaftAddress() == "" {
		return nil, c.s.toStatus(ctx, method, fmt.Errorf("%w: node_id and raft_address are required", errBadInput))
	}
	if _, _, err := net.SplitHostPort(req.GetRaftAddress()); err != nil {
		return nil, c.s.toStatus(ctx, method, fmt.Errorf("%w: raft_address: %v", errBadInput, err))
	}
	n, err := c.node()
	if err != nil {
		return nil, err
	}
	if err := n.AddVoter(ctx, req.GetNodeId(), req.GetRaftAddress()); err != nil {
		return nil, c.s.toStatus(ctx, method, err)
	}
	c.s.log.InfoContext(ctx, "cluster: voter added", "node", req.GetNodeId(), "raft_address", req.GetRaftAddress(), "by", caller.id.String())
	return &tier0v1.ClusterJoinResponse{}, nil
}

func (c *clusterService) ClusterRemove(ctx context.Context, req *tier0v1.ClusterRemoveRequest) (*tier0v1.ClusterRemoveResponse, error) {
	const method = "ClusterRemove"
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	n, err := c.node()
	if err != nil {
		return nil, err
	}
	if err := n.RemoveServer(ctx, req.GetNodeId()); err != nil {
		return nil, c.s.toStatus(ctx, method, err)
	}
	c.s.log.InfoContext(ctx, "cluster: member removed", "node", req.GetNodeId(), "by", callerFrom(ctx).id.String())
	return &tier0v1.ClusterRemoveResponse{}, nil
}

func (c *clusterService) TransferLeadership(ctx context.Context, req *tier0v1.TransferLeadershipRequest) (*tier0v1.TransferLeadershipResponse, error) {
	const method = "TransferLeadership"
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	n, err := c.node()
	if err != nil {
		return nil, err
	}
	if err := n.TransferLeadership(ctx, req.GetToNodeId()); err != nil {
		return nil, c.s.toStatus(ctx, method, err)
	}
	return &tier0v1.TransferLeadershipResponse{}, nil
}

func requireAdmin(ctx context.Context) error {
	if c := callerFrom(ctx); c.role != roles.Admin {
		return status.Errorf(codes.PermissionDenied, "%s may not manage the cluster", c.id)
	}
	return nil
}

// ---------- node to node (raft port) ----------

// Forwardee is the leader side of forwarding (implemented by *ha.Node).
type Forwardee interface {
	HandleForward(ctx context.Context, kind byte, payload []byte) ([]byte, error)
}

// NewPeerServer returns the ClusterPeer gRPC server. Serve it on
// ha.TLSTransport.PeerListener: those connections are TLS 1.3 with a node
// SVID already verified at the handshake, so the server adds no
// credentials of its own.
func NewPeerServer(node Forwardee, log *slog.Logger) *grpc.Server {
	if log == nil {
		log = slog.Default()
	}
	g := grpc.NewServer(
		grpc.MaxRecvMsgSize(64<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	tier0v1.RegisterClusterPeerServer(g, &peerService{node: node, log: log})
	return g
}

type peerService struct {
	tier0v1.UnimplementedClusterPeerServer
	node Forwardee
	log  *slog.Logger
}

func (p *peerService) Forward(ctx context.Context, req *tier0v1.ForwardRequest) (*tier0v1.ForwardResponse, error) {
	if req.GetKind() > 255 {
		return nil, status.Error(codes.InvalidArgument, "unknown forward kind")
	}
	out, err := p.node.HandleForward(ctx, byte(req.GetKind()), req.GetPayload())
	if err != nil {
		code := peerCode(err)
		if code == codes.Internal {
			p.log.Error("cluster: forwarded request failed", "kind", req.GetKind(), "err", err)
		}
		return nil, status.Error(code, err.Error())
	}
	return &tier0v1.ForwardResponse{Payload: out}, nil
}

func peerCode(err error) codes.Code {
	switch {
	case errors.Is(err, ha.ErrNotLeader):
		return codes.FailedPrecondition // certainly not proposed: the sender may retry
	case errors.Is(err, ha.ErrInvalid):
		return codes.InvalidArgument
	case errors.Is(err, ha.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, ha.ErrUnavailable):
		return codes.Unavailable
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	default:
		return codes.Internal
	}
}

// PeerForwarder implements ha.Forwarder over the ClusterPeer service,
// keeping one gRPC connection per leader address.
type PeerForwarder struct {
	dial func(ctx context.Context, addr string) (net.Conn, error)

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// NewPeerForwarder returns a forwarder dialing with dial (ha.TLSTransport.DialPeer).
func NewPeerForwarder(dial func(ctx context.Context, addr string) (net.Conn, error)) *PeerForwarder {
	return &PeerForwarder{dial: dial, conns: map[string]*grpc.ClientConn{}}
}

func (f *PeerForwarder) conn(addr string) (*grpc.ClientConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()), // TLS is inside dial
		grpc.WithContextDialer(f.dial),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 3 * time.Second, PermitWithoutStream: true}),
	)
	if err != nil {
		return nil, fmt.Errorf("api: peer %s: %w", addr, err)
	}
	f.conns[addr] = c
	return c, nil
}

// connectTimeout bounds waiting for a connection to the leader; past it
// the forward counts as not sent (ha.ErrNoRoute).
const connectTimeout = time.Second

// Forward implements ha.Forwarder.
func (f *PeerForwarder) Forward(ctx context.Context, addr string, kind byte, payload []byte) ([]byte, error) {
	c, err := f.conn(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ha.ErrNoRoute, err)
	}
	// Make sure the connection is up before sending, so that a failure
	// to connect is known not to have sent anything.
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	c.Connect()
	for st := c.GetState(); st != connectivity.Ready; st = c.GetState() {
		if !c.WaitForStateChange(cctx, st) {
			cancel()
			return nil, fmt.Errorf("api: forward to %s: %w: connection %s", addr, ha.ErrNoRoute, st)
		}
	}
	cancel()
	resp, err := tier0v1.NewClusterPeerClient(c).Forward(ctx, &tier0v1.ForwardRequest{Kind: uint32(kind), Payload: payload})
	if err != nil {
		switch status.Code(err) {
		case codes.FailedPrecondition:
			return nil, fmt.Errorf("api: forward to %s: %w: %v", addr, ha.ErrNotLeader, err)
		case codes.InvalidArgument:
			return nil, fmt.Errorf("api: forward to %s: %w: %v", addr, ha.ErrInvalid, err)
		case codes.NotFound:
			return nil, fmt.Errorf("api: forward to %s: %w: %v", addr, ha.ErrNotFound, err)
		default:
			return nil, fmt.Errorf("api: forward to %s: %w: %v", addr, ha.ErrUnavailable, err)
		}
	}
	return resp.GetPayload(), nil
}

// Close closes the connections.
func (f *PeerForwarder) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for a, c := range f.conns {
		errs = append(errs, c.Close())
		delete(f.conns, a)
	}
	return errors.Join(errs...)
}
