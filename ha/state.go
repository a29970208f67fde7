package ha

import (
	"bytes"
	"slices"
	"strings"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
)

// Entry is a registration entry: Agent may obtain SVIDs for SPIFFEID.
type Entry struct {
	ID        string        `json:"id"`
	Agent     string        `json:"agent"`
	SPIFFEID  string        `json:"spiffe_id"`
	TTL       time.Duration `json:"ttl"`
	CreatedAt time.Time     `json:"created_at"`
	// Selectors (sorted, validated by the caller) that a workload must all
	// match to get this SVID from an agent's Workload API; none means
	// `tier0-agent fetch` only. A node that predates the field drops it,
	// which fails closed: the entry is then served to no workload.
	Selectors []string `json:"selectors,omitempty"`
	// FederatesWith lists the federated trust domains (names, sorted,
	// validated by the caller) whose bundles a workload with this entry
	// receives (SPIRE's federatesWith); none means only our own bundle.
	// Only cmdCreateEntryFederated carries it (see command.go): a node that
	// predates the field refuses that command instead of dropping it. In a
	// snapshot an old node drops it, which fails closed (fewer bundles).
	FederatesWith []string `json:"federates_with,omitempty"`
	// NodeSelectors (sorted) make this a node-selector entry (SPIRE's node
	// alias): Agent is empty and the entry applies to every agent whose
	// node-attested selectors include them all (attest.go). Only
	// cmdCreateNodeEntry carries it; in a snapshot an old node drops it,
	// which fails closed (an entry of agent "" grants nothing).
	NodeSelectors []string `json:"node_selectors,omitempty"`
}

// Bundle is the trust bundle served by every node.
type Bundle struct {
	TrustDomain string   `json:"trust_domain"`
	Roots       [][]byte `json:"roots"` // DER certificates
	Sequence    uint64   `json:"sequence"`
}

func (b Bundle) clone() Bundle {
	c := b
	c.Roots = make([][]byte, len(b.Roots))
	for i, r := range b.Roots {
		c.Roots[i] = bytes.Clone(r)
	}
	return c
}

// JournalStatus describes the journal on this node.
type JournalStatus struct {
	Seq         uint64 // last committed record
	Head        []byte // its hash (record.Genesis when Seq is 0)
	ExportedSeq uint64 // records <= ExportedSeq are in the record store
	Unexported  int    // records held in raft state waiting for export
}

type token struct {
	Hash      string    `json:"hash"`
	Agent     string    `json:"agent"`
	ExpiresAt time.Time `json:"expires_at"`
	Used      bool      `json:"used"`
	Creator   string    `json:"creator,omitempty"`   // who created it (cmdCreateTokenBy)
	CreatedAt time.Time `json:"created_at,omitzero"` // when (cmdCreateTokenBy)
}

// state is everything the FSM holds. It is only mutated by FSM handlers under
// fsm.mu; snapshots and Restore copy or replace it whole.
type state struct {
	// Registration entries are held once, in byAgent (or nodeEntries);
	// entries maps an ID to where its entry is (entryindex.go).
	entries  map[string]entryLoc // by ID
	nodeKeys map[string]string   // node-selector entries: entryKeyOf -> ID
	byAgent  map[string][]Entry  // agent -> entries sorted by SPIFFEID (copy on write)
	tokens   map[string]token    // by hash
	agents   map[string]Agent    // by subject (agents.go)
	bundle   Bundle
	ca       CAState         // CA roots (castate.go)
	trust    TrustState      // JWT keys and federation (trust.go)
	audit    auditState      // signed checkpoints (checkpoint.go)
	lineage  *record.Lineage // cluster and lineage of the journal (lineage.go); nil until the first exporter sets it
	attest   attestState     // node attestation (attest.go)
	// nodeEntries are the node-selector entries (copy on write), sorted.
	nodeEntries []Entry

	seq         uint64
	head        []byte
	lastCommit  time.Time // CommittedAt of record seq (CommittedAt never goes backwards)
	exportedSeq uint64
	tail        []*record.Record // seq exportedSeq+1 .. seq, in order; never mutated once appended
	idem        idemIndex        // idempotency key hash -> committed record (idem.go)
}

func newState() *state {
	return &state{
		entries:  map[string]entryLoc{},
		nodeKeys: map[string]string{},
		byAgent:  map[string][]Entry{},
		tokens:   map[string]token{},
		agents:   map[string]Agent{},
		head:     bytes.Clone(record.Genesis),
	}
}

func entryKey(agent, id string) string { return agent + "\x00" + id }

func (s *state) putEntry(e Entry) {
	s.entries[e.ID] = entryLoc{agent: e.Agent, spiffeID: e.SPIFFEID, node: len(e.NodeSelectors) > 0}
	if len(e.NodeSelectors) > 0 {
		s.nodeKeys[entryKeyOf(e)] = e.ID
		s.nodeEntries = append(slices.Clone(s.nodeEntries), e)
		sortEntries(s.nodeEntries)
		return
	}
	// A new slice of exactly the new length (copy on write: readers may
	// hold the old one), with e inserted at its place in the order.
	old := s.byAgent[e.Agent]
	i, _ := slices.BinarySearchFunc(old, e, compareEntries)
	es := make([]Entry, len(old)+1)
	copy(es, old[:i])
	es[i] = e
	copy(es[i+1:], old[i:])
	s.byAgent[e.Agent] = es
}

func (s *state) removeEntry(e Entry) {
	delete(s.entries, e.ID)
	if len(e.NodeSelectors) > 0 {
		delete(s.nodeKeys, entryKeyOf(e))
		s.nodeEntries = slices.DeleteFunc(slices.Clone(s.nodeEntries), func(x Entry) bool { return x.ID == e.ID })
		return
	}
	old := s.byAgent[e.Agent]
	if len(old) <= 1 {
		delete(s.byAgent, e.Agent)
		return
	}
	es := make([]Entry, 0, len(old)-1)
	for _, x := range old {
		if x.ID != e.ID {
			es = append(es, x)
		}
	}
	s.byAgent[e.Agent] = es
}

func sortEntries(es []Entry) { slices.SortFunc(es, compareEntries) }

// compareEntries orders entries by SPIFFE ID, agent, then ID.
func compareEntries(a, b Entry) int {
	if c := strings.Compare(a.SPIFFEID, b.SPIFFEID); c != 0 {
		return c
	}
	if c := strings.Compare(a.Agent, b.Agent); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// purgeTokens drops tokens that expired before now: used ones have served
// their purpose, unused ones can never be used.
func (s *state) purgeTokens(now time.Time) {
	for h, t := range s.tokens {
		if !now.Before(t.ExpiresAt) {
			delete(s.tokens, h)
		}
	}
}

func (s *state) journalStatus() JournalStatus {
	return JournalStatus{
		Seq:         s.seq,
		Head:        bytes.Clone(s.head),
		ExportedSeq: s.exportedSeq,
		Unexported:  len(s.tail),
	}
}

// tailAfter returns copies of up to max unexported records with Seq > after.
func (s *state) tailAfter(after uint64, max int) []*record.Record {
	if len(s.tail) == 0 || max <= 0 {
		return nil
	}
	start := 0
	if first := s.tail[0].Seq; after >= first {
		start = int(after - first + 1)
	}
	if start >= len(s.tail) {
		return nil
	}
	end := min(len(s.tail), start+max)
	out := make([]*record.Record, 0, end-start)
	for _, r := range s.tail[start:end] {
		out = append(out, cloneRecord(r))
	}
	return out
}

func cloneRecord(r *record.Record) *record.Record {
	c := *r
	c.CertDER = bytes.Clone(r.CertDER)
	c.PrevHash = bytes.Clone(r.PrevHash)
	c.Hash = bytes.Clone(r.Hash)
	return &c
}
