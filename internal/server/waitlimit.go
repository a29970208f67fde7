package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// A member that waits for a leader asks the others every removedEvery
// (clusterView.removedByPeers): one that answers it and no longer lists
// it means it was removed while it was down (it then refuses to start).
// When none answers at all, it cannot tell: the others may be down or
// starting, or it was removed and the remaining members moved, or they
// refuse its node SVID. It waits while that lasts less than the
// Cluster.WaitTimeout (--cluster-wait-timeout), then exits saying what to
// do, rather than wait forever (docs/OPERATIONS.md "Remove a node").

// DefaultClusterWaitTimeout is --cluster-wait-timeout's default.
const DefaultClusterWaitTimeout = 10 * time.Minute

// ErrNoMemberAnswers: no other member answered a waiting member within
// Cluster.WaitTimeout.
var ErrNoMemberAnswers = errors.New("cluster: no other member answers")

// peerWatch is the removed/no-answer check of a member waiting for a
// leader.
type peerWatch struct {
	ask     func(context.Context) (answered bool, err error)
	members func() []string // the other members, "ID=ADDRESS"
	limit   time.Duration   // 0: no limit
	nodeID  string
	dataDir string
	now     func() time.Time
	last    time.Time // the last answer, or the start
}

// check asks the members once; it returns the removal, or
// ErrNoMemberAnswers once none has answered for the limit.
func (w *peerWatch) check(ctx context.Context) error {
	answered, err := w.ask(ctx)
	if err != nil {
		return err
	}
	now := w.now()
	others := w.members()
	if answered || len(others) == 0 {
		w.last = now
		return nil
	}
	if w.limit <= 0 || now.Sub(w.last) < w.limit {
		return nil
	}
	return fmt.Errorf("%w: none of the members in this node's raft configuration (%s) has answered for %v. "+
		"If they are down, start them: a leader needs a majority of the voters. If this node was removed from the cluster "+
		"while it was down, or the members now run elsewhere, bring it back as a new member: delete %s and %s, "+
		"create a node token on a member (`tier0 token create --node %s`) and start it with --join and --join-token. "+
		"To wait longer, raise --cluster-wait-timeout (0 waits without limit)",
		ErrNoMemberAnswers, strings.Join(others, ", "), w.limit.Round(time.Second),
		filepath.Join(w.dataDir, "raft"), joinedMarker(w.dataDir), w.nodeID)
}

// peerWatch is the check of this run's waiting member.
func (r *run) peerWatch() *peerWatch {
	v := r.clusterView()
	self := r.s.cfg.NodeID
	return &peerWatch{
		ask: v.removedByPeers, limit: r.s.cfg.Cluster.WaitTimeout, nodeID: self, dataDir: r.s.cfg.DataDir,
		now: time.Now, last: time.Now(),
		members: func() []string {
			var out []string
			for _, sv := range v.Status().Servers {
				if sv.ID != self {
					out = append(out, sv.ID+"="+sv.Address)
				}
			}
			return out
		},
	}
}
