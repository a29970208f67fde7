package api

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc/codes"
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
	if m, ok := n.(interface {
		MemberStatuses(context.Context) []*tier0v1.MemberStatus
	}); ok {
		resp.MemberStatus = m.MemberStatuses(ctx)
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
