package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/version"
)

// Member status (`tier0 cluster status`, /healthz?verbose): each member
// describes itself (memberStatus); the node answering ClusterStatus asks
// every other member over the raft port (ClusterMemberPeer, mTLS with
// node SVIDs) and fills each one's lag behind the leader's commit index.

// memberAskTimeout bounds asking one member for its status.
const memberAskTimeout = 2 * time.Second

// notReady is every failing readiness check, "name: reason".
func (s *Server) notReady() []string {
	var failed []string
	for _, c := range s.readiness() {
		if err := c.Check(); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", c.Name, err))
		}
	}
	return failed
}

func okOr(err error) string {
	if err != nil {
		return err.Error()
	}
	return "ok"
}

// memberStatus is this node's own view of itself.
func (s *Server) memberStatus() *tier0v1.MemberStatus {
	m := &tier0v1.MemberStatus{NodeId: s.cfg.NodeID, Version: version.Get().String(), LastContactMs: -1,
		Signer: "not open yet", Journal: "raft not started", RecordStore: "raft not started"}
	if a := s.addrs.Load(); a != nil {
		m.ApiAddress, m.HttpAddress = a[0], a[1]
	}
	m.NotReady = s.notReady()
	m.Healthy = len(m.NotReady) == 0
	if k := s.keys.Load(); k != nil {
		m.Signer = okOr(k.SignerReady())
	}
	if n := s.node.Load(); n != nil {
		st := n.Status()
		m.State, m.LeaderId, m.Term = st.State, st.Leader, st.Term
		m.CommitIndex, m.AppliedIndex, m.LastIndex = st.CommitIndex, st.AppliedIndex, st.LastIndex
		m.ExportLag = st.Journal.Seq - st.Journal.ExportedSeq
		m.Journal, m.RecordStore = okOr(n.Health()), okOr(n.ExportHealth())
		for _, sv := range st.Servers {
			m.Members = append(m.Members, sv.ID)
			if sv.ID == s.cfg.NodeID {
				m.RaftAddress, m.Suffrage = sv.Address, sv.Suffrage
			}
		}
		switch lc := n.LastContact(); {
		case n.IsLeader():
			m.LastContactMs = 0
		case !lc.IsZero():
			m.LastContactMs = time.Since(lc).Milliseconds()
		}
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(s.cfg.DataDir, &fs); err == nil {
		m.DiskFreeBytes = fs.Bavail * uint64(fs.Bsize)  //nolint:gosec // G115: block size is positive
		m.DiskTotalBytes = fs.Blocks * uint64(fs.Bsize) //nolint:gosec // G115: as above
	}
	return m
}

// memberPeer answers the other members' GetMemberStatus on the peer port.
type memberPeer struct {
	tier0v1.UnimplementedClusterMemberPeerServer
	s *Server
}

func (p memberPeer) GetMemberStatus(context.Context, *tier0v1.MemberStatusRequest) (*tier0v1.MemberStatus, error) {
	return p.s.memberStatus(), nil
}

// clusterView is what the API's Cluster service sees: the raft node, plus
// every member's own status (api.ClusterStatus asks for MemberStatuses).
type clusterView struct {
	*ha.Node
	s    *Server
	dial func(ctx context.Context, addr string) (net.Conn, error) // raft transport; nil: single node
}

// MemberStatuses asks every member of the raft configuration for its
// status, at once (this node answers for itself), each bounded by
// memberAskTimeout; a member that cannot be asked has Error set.
func (v clusterView) MemberStatuses(ctx context.Context) []*tier0v1.MemberStatus {
	st := v.Status()
	out := make([]*tier0v1.MemberStatus, len(st.Servers))
	var wg sync.WaitGroup
	for i, sv := range st.Servers {
		if sv.ID == v.s.cfg.NodeID || v.dial == nil {
			out[i] = v.s.memberStatus()
		} else {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out[i] = v.ask(ctx, sv.Address)
			}()
		}
	}
	wg.Wait()
	var leaderCommit uint64
	for i, sv := range st.Servers {
		m := out[i]
		if m.Error != "" || m.NodeId != sv.ID {
			if m.Error == "" {
				m.Error = fmt.Sprintf("the member at %s says it is %q", sv.Address, m.NodeId)
			}
			m.NodeId, m.Healthy = sv.ID, false
		}
		m.RaftAddress, m.Suffrage = sv.Address, sv.Suffrage
		if sv.ID == st.Leader && m.Error == "" {
			leaderCommit = m.CommitIndex
		}
	}
	if leaderCommit == 0 {
		leaderCommit = st.CommitIndex
	}
	for _, m := range out {
		if m.Error == "" && leaderCommit > m.AppliedIndex {
			m.Lag = leaderCommit - m.AppliedIndex
		}
	}
	return out
}

func (v clusterView) ask(ctx context.Context, addr string) *tier0v1.MemberStatus {
	ctx, cancel := context.WithTimeout(ctx, memberAskTimeout)
	defer cancel()
	fail := func(err error) *tier0v1.MemberStatus {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %v", memberAskTimeout)
		}
		return &tier0v1.MemberStatus{Error: "unreachable: " + status.Convert(err).Message(), LastContactMs: -1}
	}
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()), // TLS (node SVIDs) is inside dial
		grpc.WithContextDialer(v.dial))
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	m, err := tier0v1.NewClusterMemberPeerClient(conn).GetMemberStatus(ctx, &tier0v1.MemberStatusRequest{})
	if err != nil {
		return fail(err)
	}
	return m
}

// clusterView is the API's view of this run's node.
func (r *run) clusterView() clusterView {
	v := clusterView{Node: r.node, s: r.s}
	if r.cluster != nil {
		v.dial = r.cluster.trans.DialPeer
	}
	return v
}

// membershipReady fails once this node has seen the raft configuration
// that removes it (ha.ErrRemoved; a restart then refuses to start).
func (s *Server) membershipReady() error {
	if n := s.node.Load(); n != nil {
		return n.Removed()
	}
	return nil
}

// removedByPeers asks the members this node knows: one that has a leader
// and no longer lists this node in its raft configuration means it was
// removed while it was down (its own log never got the removal). Errors
// wrap ha.ErrRemoved; nil when no member says so (or none answers).
// answered reports whether any member answered.
func (v clusterView) removedByPeers(ctx context.Context) (answered bool, err error) {
	self := v.s.cfg.NodeID
	for _, sv := range v.Status().Servers {
		if sv.ID == self {
			continue
		}
		m := v.ask(ctx, sv.Address)
		if m.GetError() != "" {
			continue
		}
		answered = true
		if m.GetLeaderId() == "" || len(m.GetMembers()) == 0 || slices.Contains(m.GetMembers(), self) {
			continue
		}
		return true, fmt.Errorf("%w while it was down: member %s (leader %s) no longer lists it: its raft configuration lists %s, not %s; to bring it back as a new member: stop it, delete %s and %s, "+
			"create a node token on a member (`tier0 token create --node %s`) and start it with --join and --join-token",
			ha.ErrRemoved, m.GetNodeId(), m.GetLeaderId(), strings.Join(m.GetMembers(), ", "), self,
			filepath.Join(v.s.cfg.DataDir, "raft"), joinedMarker(v.s.cfg.DataDir), self)
	}
	return answered, nil
}

// journalReady fails while a fail-closed journal is full (mints refused).
func (s *Server) journalReady() error {
	if j := s.jrnl.Load(); j != nil {
		return j.Ready()
	}
	return nil
}
