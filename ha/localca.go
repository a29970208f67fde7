package ha

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// LocalCAState returns the CA roots as of the end of this node's own raft
// log, committed or not: the FSM's state (a restarted node has restored
// only its newest snapshot until a leader tells it what is committed)
// with the CA root commands (0x10) of the entries after it applied on a
// copy. It is what a node that cannot reach its peers yet knows about the
// CA: a restarting member uses it to re-issue its expired node SVID from
// the CA key before it can join raft (internal/server, ha/DESIGN.md
// "Cluster"). An entry that does not pass its digest or checks, or that
// the state refuses, is skipped, as the FSM would leave the state alone.
// Nothing here is authoritative: a root taken from an uncommitted entry
// would only give the node an SVID its peers refuse.
func (n *Node) LocalCAState() (CAState, error) {
	applied := n.raft.AppliedIndex()
	s := &state{}
	n.fsm.read(func(cur *state) { s.ca, s.bundle = cur.ca.clone(), cur.bundle.clone() })
	last, err := n.logs.LastIndex()
	if err != nil {
		return CAState{}, fmt.Errorf("ha: local ca state: %w", err)
	}
	first, err := n.logs.FirstIndex()
	if err != nil {
		return CAState{}, fmt.Errorf("ha: local ca state: %w", err)
	}
	for i := max(applied+1, first); i <= last && i > 0; i++ {
		var l raft.Log
		if err := n.logs.GetLog(i, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) {
				continue
			}
			return CAState{}, fmt.Errorf("ha: local ca state: entry %d: %w", i, err)
		}
		if l.Type != raft.LogCommand || len(l.Data) == 0 || l.Data[0] != cmdCARoots && l.Data[0] != cmdEvented {
			continue
		}
		if _, _, err := checkDigest(l.Data); err != nil {
			continue
		}
		payload := l.Data[1:]
		if l.Data[0] == cmdEvented { // a CA root change with its admin event (events.go)
			ev, err := decodeValid[eventedCmd]("evented", payload)
			if err != nil || ev.Op != cmdCARoots {
				continue
			}
			payload = ev.Cmd
		}
		c, err := decodeValid[caRootsCmd]("ca roots", payload)
		if err != nil {
			continue
		}
		switch c.Op {
		case "add":
			s.addCARoot(*c)
		case "activate":
			s.activateCARoot(*c)
		default:
			s.pruneCARoots(*c)
		}
	}
	return s.ca, nil
}
