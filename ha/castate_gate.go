package ha

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// Root activation gate and per-node key reports (DESIGN.md "Root
// rotation"). Every node reports, through the log, which CA root keys it
// can sign with and which root it issues from; `tier0 ca activate`
// refuses a prepared root until it has been published for the publish
// window and every voter has reported that it can sign with its key, and
// `tier0 ca list` shows per node what each root really is on that node.

// cmdCAKeyReport records one node's NodeCAKeys (caKeyReportCmd). It is
// ignorable: a node that predates it only lacks the reports (and such a
// node cannot gate activation anyway), while nodes emit it on their own,
// so an upgraded node must not stop an old one.
const cmdCAKeyReport byte = ignorableFlag | 0x18

// ErrPrecondition: the request is valid but the cluster is not in a state
// that allows it yet (a prepared root not yet published long enough, or a
// voter that cannot sign with it). Maps to FailedPrecondition.
var ErrPrecondition = errors.New("ha: precondition failed")

// NodeCAKeys is what one node reports about the CA root keys.
type NodeCAKeys struct {
	Node    string            `json:"node"`
	Issuing string            `json:"issuing,omitempty"` // the root this node issues from
	Ready   []string          `json:"ready,omitempty"`   // sorted root IDs whose key this node opened and test-signed with
	Errors  map[string]string `json:"errors,omitempty"`  // root ID -> why this node cannot sign with it
	At      time.Time         `json:"at"`                // when the report was made (the node's clock)
}

// Same reports whether r and o say the same (At aside).
func (r NodeCAKeys) Same(o NodeCAKeys) bool {
	return r.Node == o.Node && r.Issuing == o.Issuing && slices.Equal(r.Ready, o.Ready) && maps.Equal(r.Errors, o.Errors)
}

func (r NodeCAKeys) clone() NodeCAKeys {
	r.Ready = slices.Clone(r.Ready)
	r.Errors = maps.Clone(r.Errors)
	return r
}

// Node returns the report of node id.
func (c CAState) Node(id string) (NodeCAKeys, bool) {
	for _, r := range c.Nodes {
		if r.Node == id {
			return r, true
		}
	}
	return NodeCAKeys{}, false
}

type caKeyReportCmd struct {
	Report NodeCAKeys `json:"report"`
}

func (c *caKeyReportCmd) validate() error {
	if c.Report.Node == "" || len(c.Report.Node) > 256 || len(c.Report.Ready) > 64 || len(c.Report.Errors) > 64 {
		return fmt.Errorf("ha: ca key report: a node id and at most 64 roots are required: %w", ErrInvalid)
	}
	return nil
}

// ReportCAKeys records this node's report about the CA root keys.
func (n *Node) ReportCAKeys(ctx context.Context, r NodeCAKeys) error {
	r = r.clone()
	slices.Sort(r.Ready)
	for id, msg := range r.Errors {
		if len(msg) > 512 {
			r.Errors[id] = msg[:512]
		}
	}
	_, err := n.apply(ctx, "report ca keys", cmdCAKeyReport, caKeyReportCmd{Report: r})
	return err
}

func (f *fsm) applyCAKeyReport(payload []byte) any {
	c, err := decodeValid[caKeyReportCmd]("ca key report", payload)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.s
	nodes := slices.DeleteFunc(slices.Clone(s.ca.Nodes), func(r NodeCAKeys) bool { return r.Node == c.Report.Node })
	nodes = append(nodes, c.Report.clone())
	slices.SortFunc(nodes, func(a, b NodeCAKeys) int { return strings.Compare(a.Node, b.Node) })
	s.ca.Nodes = nodes
	s.ca.Sequence++
	return nil
}

// Voters returns the IDs of the voters in the raft configuration, sorted.
func (n *Node) Voters() ([]string, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("ha: raft configuration: %w: %w", ErrUnavailable, err)
	}
	var ids []string
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			ids = append(ids, string(s.ID))
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// GateActivation is the check `tier0 ca activate` runs before it makes the
// prepared root id active: the root has been published (in the bundle)
// for at least window, unless force; and every voter has reported that it
// can sign with its key (never overridden: a voter that cannot would stop
// issuing). It returns a warning when force skipped the window.
func GateActivation(c CAState, id string, voters []string, now time.Time, window time.Duration, force bool) (string, error) {
	r, ok := c.Root(id)
	if !ok {
		return "", fmt.Errorf("ha: activate ca root %q: %w", id, ErrNotFound)
	}
	if r.State != RootPrepared {
		return "", fmt.Errorf("ha: activate ca root %s: it is %s, only a prepared root can be activated: %w", id, r.State, ErrInvalid)
	}
	var missing []string
	for _, v := range voters {
		rep, ok := c.Node(v)
		switch {
		case !ok:
			missing = append(missing, v+" (no report yet)")
		case rep.Errors[id] != "":
			missing = append(missing, v+" ("+rep.Errors[id]+")")
		case !slices.Contains(rep.Ready, id):
			missing = append(missing, v+" (not tested yet)")
		}
	}
	var problems []string
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("not every voter can sign with its key: %s; each node must be able to open the key URI (a DEV-ONLY soft key made by `tier0 ca prepare` without --signer exists on one node only); fix the key or remove the node from the cluster",
			strings.Join(missing, "; ")))
	}
	published := now.Sub(r.PreparedAt)
	early := published < window
	if early && !force {
		problems = append(problems, fmt.Sprintf("published %s ago, less than the publish window %s: agents may not have it in their bundle yet (they fetch it at every sync); retry after %s, or pass --force",
			published.Round(time.Second), window, r.PreparedAt.Add(window).UTC().Format(time.RFC3339)))
	}
	if len(problems) > 0 {
		return "", fmt.Errorf("ha: activate ca root %s: %s: %w", id, strings.Join(problems, "; and "), ErrPrecondition)
	}
	if !early {
		return "", nil
	}
	return fmt.Sprintf("root %s was published only %s ago, less than the publish window %s: agents that have not synced since may reject SVIDs issued under it and, once the nodes serve under it, fail to connect until given the new bundle.pem",
		id, published.Round(time.Second), window), nil
}

// Root states as `tier0 ca list` shows them, per node and for the cluster.
const (
	ViewPrepared     = "prepared"      // in the bundle, not issuing
	ViewActive       = "active"        // issuing (on that node)
	ViewActivating   = "activating"    // active in raft state; the node still issues from another root
	ViewPublishedOld = "published-old" // replaced; in the bundle while SVIDs it signed may be valid
	ViewRetired      = "retired"       // nothing it signed is valid any more; leaves the bundle at the next prune
)

// NodeView is what root r is on node (with its report, if any): one of the
// View states, followed by " (…)" when the node cannot sign with a
// prepared or activating root, or has not reported on it. validFor is how
// long an SVID issued just before the root was replaced may stay valid.
func (c CAState) NodeView(r CARoot, node string, now time.Time, validFor time.Duration) string {
	rep, ok := c.Node(node)
	switch {
	case ok && rep.Issuing == r.ID:
		return ViewActive
	case r.State == RootPrepared || r.State == RootActive:
		st := ViewPrepared
		if r.State == RootActive {
			st = ViewActivating
		}
		switch {
		case !ok:
			return st + " (no report)"
		case rep.Errors[r.ID] != "":
			return st + " (cannot sign: " + rep.Errors[r.ID] + ")"
		case !slices.Contains(rep.Ready, r.ID):
			return st + " (not tested yet)"
		}
		return st
	case now.Before(r.RetiredAt.Add(validFor)):
		return ViewPublishedOld
	default:
		return ViewRetired
	}
}

// View is what root r is in the cluster: active while any node issues from
// it, even when raft state has retired it.
func (c CAState) View(r CARoot, now time.Time, validFor time.Duration) string {
	switch {
	case r.State == RootActive || slices.ContainsFunc(c.Nodes, func(n NodeCAKeys) bool { return n.Issuing == r.ID }):
		return ViewActive
	case r.State == RootPrepared:
		return ViewPrepared
	case now.Before(r.RetiredAt.Add(validFor)):
		return ViewPublishedOld
	default:
		return ViewRetired
	}
}

// ForMembers drops the reports of nodes not in members (nodes removed from
// the cluster keep their last report in raft state).
func (c CAState) ForMembers(members []string) CAState {
	c = c.clone()
	c.Nodes = slices.DeleteFunc(c.Nodes, func(r NodeCAKeys) bool { return !slices.Contains(members, r.Node) })
	return c
}

// LocalNodeID is this node's raft server ID.
func (n *Node) LocalNodeID() string { return n.cfg.NodeID }
