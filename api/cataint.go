package api

import (
	"context"
	"fmt"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ha"
)

// CARootView is a root as `tier0 ca list` shows it: its state in the
// cluster and on each node (ha.CAState.View and NodeView), and whether it
// is tainted.
type CARootView struct {
	Root    ha.CARoot
	State   string
	Nodes   []CARootNodeView
	Tainted bool
}

// CARootNodeView is what a root is on one node.
type CARootNodeView struct{ Node, State string }

func caRootViewToProto(v CARootView) *tier0v1.CARoot {
	p := caRootToProto(v.Root)
	p.State, p.Tainted = v.State, v.Tainted
	for _, n := range v.Nodes {
		p.Nodes = append(p.Nodes, &tier0v1.CARootNode{Node: n.Node, State: n.State})
	}
	return p
}

// TaintKey taints a replaced CA root or a JWT key: agents re-issue what
// descends from it at their next sync.
func (a *adminService) TaintKey(ctx context.Context, req *tier0v1.TaintKeyRequest) (*tier0v1.TaintKeyResponse, error) {
	const method = "TaintKey"
	m, err := a.caManager()
	if err != nil {
		return nil, a.s.toStatus(ctx, method, err)
	}
	kind := req.GetKind()
	if kind != ha.TaintX509 && kind != ha.TaintJWT {
		return nil, a.s.toStatus(ctx, method, fmt.Errorf("%w: kind %q: want %s or %s", errBadInput, kind, ha.TaintX509, ha.TaintJWT))
	}
	if req.GetId() == "" {
		return nil, a.s.toStatus(ctx, method, fmt.Errorf("%w: key id is required", errBadInput))
	}
	if err := m.TaintKey(ctx, kind, req.GetId()); err != nil {
		return nil, a.s.toStatus(ctx, method, caKeyErr(err))
	}
	a.s.log.WarnContext(ctx, "key tainted: agents re-issue what it signed at their next sync", "kind", kind, "id", req.GetId(), "by", callerFrom(ctx).id.String())
	return &tier0v1.TaintKeyResponse{}, nil
}

// addTaints adds the tainted roots and JWT key IDs to a bundle response.
func (s *Server) addTaints(resp *tier0v1.GetBundleResponse) {
	if s.cfg.CA == nil {
		return
	}
	resp.TaintedX509Authorities, resp.TaintedJwtKeyIds = s.cfg.CA.Tainted()
}
