package ha

import "time"

// LastContact is when this node last heard from a leader (raft's view;
// zero: never since it started). On the leader it is not meaningful:
// callers report 0 there.
func (n *Node) LastContact() time.Time { return n.raft.LastContact() }
