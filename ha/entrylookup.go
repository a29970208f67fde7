package ha

import (
	"slices"
	"strings"
)

// EntryFor returns the first (by entry ID order within the SPIFFE ID) of
// agent's entries that names spiffeID, from the local per-agent index,
// without copying the agent's entries: a binary search of the index,
// which is sorted by SPIFFEID and replaced, never changed in place, on
// writes. It is the authorization fast path (one lookup per SVID);
// EntriesFor copies all of them. On a miss it looks through the
// node-selector entries that apply to agent (attest.go).
func (n *Node) EntryFor(agent, spiffeID string) (Entry, bool) {
	var (
		e  Entry
		ok bool
	)
	n.fsm.read(func(s *state) {
		es := s.byAgent[agent]
		i, found := slices.BinarySearchFunc(es, spiffeID, func(e Entry, id string) int { return strings.Compare(e.SPIFFEID, id) })
		if found {
			e, ok = es[i], true
			return
		}
		e, ok = s.nodeEntryFor(agent, spiffeID) // attest.go
	})
	return e, ok
}
