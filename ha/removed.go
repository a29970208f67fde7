package ha

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/hashicorp/raft"
)

// ErrRemoved: the newest raft configuration this node holds (in its log or
// snapshot) does not include it: `tier0 cluster remove` took it out. It
// would otherwise sit as a candidate that the members ignore.
var ErrRemoved = errors.New("ha: this node was removed from the cluster")

// removedFrom returns an error wrapping ErrRemoved when the configuration
// r holds has members but not id; nil otherwise (also when r holds none
// yet: a node that has not joined).
func removedFrom(r *raft.Raft, id, dataDir string) error {
	f := r.GetConfiguration()
	if f.Error() != nil {
		// Raft could not read its configuration (shutting down): nothing
		// is known about removal; the caller's own raft errors say why.
		return nil //nolint:nilerr // unknown is not removed
	}
	c := f.Configuration()
	if len(c.Servers) == 0 {
		return nil
	}
	var ids []string
	for _, s := range c.Servers {
		if string(s.ID) == id {
			return nil
		}
		ids = append(ids, string(s.ID))
	}
	return fmt.Errorf("%w: the newest raft configuration in its data (index %d) lists %s, not %s; "+
		"to bring it back as a new member: stop it, delete %s and %s, create a node token on a member "+
		"(`tier0 token create --node %s`) and start it with --join and --join-token",
		ErrRemoved, f.Index(), strings.Join(ids, ", "), id,
		filepath.Join(dataDir, "raft"), filepath.Join(dataDir, "node", "joined"), id)
}

// Removed returns an error wrapping ErrRemoved once this node has seen the
// configuration that removes it (readiness), else nil.
func (n *Node) Removed() error { return removedFrom(n.raft, n.cfg.NodeID, n.cfg.DataDir) }
