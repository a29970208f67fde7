package ha

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// The agent registry (DESIGN.md "Agent registry"): one record per attested
// subject (an agent name, or tier0-admin/NAME, tier0-auditor/NAME for a
// named operator), keyed by the join token's subject. Every successful
// attestation bumps the subject's Generation; the server binds each SVID
// it issues to the subject at that generation (api: an X.509 extension),
// and every node refuses, from its local replicated state, a credential
// whose generation is not the current one or whose subject is evicted or
// banned.
const (
	// cmdAttest consumes a join token and bumps its subject's generation
	// in one entry (attestCmd). Not ignorable: an old node cannot skip it
	// (the token would stay usable there).
	cmdAttest byte = 0x11
	// cmdAgentRenewed notes an SVID issued to a subject (agentRenewedCmd).
	// Informational only (the generation, not the serial, is checked), so
	// a node that predates it may skip it.
	cmdAgentRenewed byte = ignorableFlag | 0x12
	// cmdAgentState evicts, bans or unbans a subject (agentStateCmd).
	cmdAgentState byte = 0x13
	// cmdRevokeToken deletes an unused join token (revokeTokenCmd).
	cmdRevokeToken byte = 0x14
	// cmdCreateTokenBy is cmdCreateToken that also records who created the
	// token (createTokenByCmd). A new type rather than a field added to
	// cmdCreateToken (command.go).
	cmdCreateTokenBy byte = 0x15
)

// Agent states.
const (
	AgentActive  = "active"
	AgentEvicted = "evicted" // its credential is refused; a new token re-attests it
	AgentBanned  = "banned"  // evicted, and no token attests it until unbanned
)

// ErrDenied: the subject is evicted or banned, or the credential is not the
// subject's current one (api: PermissionDenied).
var ErrDenied = errors.New("ha: permission denied")

// Agent is the registry record of one attested subject.
type Agent struct {
	Subject      string    `json:"subject"`    // token subject: agent name, tier0-admin/NAME, tier0-auditor/NAME
	Generation   uint64    `json:"generation"` // bumped by every attestation; 0: never attested
	State        string    `json:"state"`
	Selectors    []string  `json:"selectors,omitempty"` // what attested it (join_token:HASHPREFIX)
	AttestedAt   time.Time `json:"attested_at,omitzero"`
	AttestedNode string    `json:"attested_node,omitempty"`
	Serial       string    `json:"serial,omitempty"` // the newest SVID issued at this generation
	NotAfter     time.Time `json:"not_after,omitzero"`
	RenewedAt    time.Time `json:"renewed_at,omitzero"`
	RenewedNode  string    `json:"renewed_node,omitempty"`
	StateBy      string    `json:"state_by,omitempty"` // who evicted, banned or unbanned it
	StateAt      time.Time `json:"state_at,omitzero"`
}

func (a Agent) clone() Agent {
	a.Selectors = slices.Clone(a.Selectors)
	return a
}

// TokenInfo describes a join token (never the token itself).
type TokenInfo struct {
	Hash      string    `json:"hash"`
	Subject   string    `json:"subject"`
	ExpiresAt time.Time `json:"expires_at"`
	Used      bool      `json:"used"`
	Creator   string    `json:"creator,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// attestCmd attests with a join token (Hash), or, with Hash empty,
// records an attestation the server verified itself (a node attestor's
// evidence) for Subject with Selectors.
type attestCmd struct {
	Hash      string    `json:"hash,omitempty"`
	Subject   string    `json:"subject,omitempty"`
	Selectors []string  `json:"selectors,omitempty"`
	Now       time.Time `json:"now"`
	Node      string    `json:"node"`
}

func (c *attestCmd) validate() error {
	if c.Hash == "" {
		if c.Subject == "" || strings.HasPrefix(c.Subject, nodeTokenPrefix) {
			return fmt.Errorf("ha: attest: a token hash or an agent subject is required: %w", ErrInvalid)
		}
		return nil
	}
	return validTokenHash(c.Hash)
}

// attestResult is cmdAttest's response (encoded as a string so that it
// crosses a forward unchanged).
type attestResult struct {
	Subject    string `json:"subject"`
	Generation uint64 `json:"generation"`
}

type agentRenewedCmd struct {
	Subject    string    `json:"subject"`
	Generation uint64    `json:"generation"`
	Serial     string    `json:"serial"`
	NotAfter   time.Time `json:"not_after"`
	Now        time.Time `json:"now"`
	Node       string    `json:"node"`
}

func (c *agentRenewedCmd) validate() error {
	if c.Subject == "" || c.Generation == 0 || c.Serial == "" {
		return fmt.Errorf("ha: agent renewed: subject, generation and serial are required: %w", ErrInvalid)
	}
	return nil
}

type agentStateCmd struct {
	Subject string    `json:"subject"`
	Op      string    `json:"op"` // evict, ban, unban
	By      string    `json:"by"`
	Now     time.Time `json:"now"`
}

func (c *agentStateCmd) validate() error {
	if c.Subject == "" || strings.HasPrefix(c.Subject, nodeTokenPrefix) {
		return fmt.Errorf("ha: agent state: an agent or operator subject is required: %w", ErrInvalid)
	}
	switch c.Op {
	case "evict", "ban", "unban":
		return nil
	}
	return fmt.Errorf("ha: agent state: op %q: want evict, ban or unban: %w", c.Op, ErrInvalid)
}

type revokeTokenCmd struct {
	Hash string    `json:"hash"`
	By   string    `json:"by"`
	Now  time.Time `json:"now"`
}

func (c *revokeTokenCmd) validate() error { return validTokenHash(c.Hash) }

type createTokenByCmd struct {
	createTokenCmd
	Creator string `json:"creator"`
}

// nodeTokenPrefix is api.NodeTokenPrefix: node tokens attest cluster
// nodes, which are not in the registry.
const nodeTokenPrefix = "tier0-node/" //nolint:gosec // a name prefix, not a credential

func init() {
	handlers[cmdAttest] = plain((*fsm).applyAttest)
	handlers[cmdAgentRenewed] = plain((*fsm).applyAgentRenewed)
	handlers[cmdAgentState] = plain((*fsm).applyAgentState)
	handlers[cmdRevokeToken] = plain((*fsm).applyRevokeToken)
	handlers[cmdCreateTokenBy] = plain((*fsm).applyCreateTokenBy)
	payloads[cmdAttest] = func() validator { return new(attestCmd) }
	payloads[cmdAgentRenewed] = func() validator { return new(agentRenewedCmd) }
	payloads[cmdAgentState] = func() validator { return new(agentStateCmd) }
	payloads[cmdRevokeToken] = func() validator { return new(revokeTokenCmd) }
	payloads[cmdCreateTokenBy] = func() validator { return new(createTokenByCmd) }
}

// applyAttest consumes the token and, unless its subject is a cluster
// node, bumps the subject's generation and makes it active. A banned
// subject is refused and its token stays unused (it works after unban
// until it expires).
func (f *fsm) applyAttest(payload []byte) any {
	c, err := decodeValid[attestCmd]("attest", payload)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.s
	subject, selectors := c.Subject, c.Selectors
	var t token
	if c.Hash != "" {
		s.purgeTokens(c.Now)
		var ok bool
		t, ok = s.tokens[c.Hash]
		if !ok || t.Used || !c.Now.Before(t.ExpiresAt) {
			return fmt.Errorf("ha: attest: %w", ErrTokenInvalid)
		}
		subject, selectors = t.Agent, []string{"join_token:" + c.Hash[:12]}
	}
	a, known := s.agents[subject]
	if known && a.State == AgentBanned {
		return fmt.Errorf("ha: attest: %s is banned (tier0 agent unban): %w", subject, ErrDenied)
	}
	if c.Hash != "" {
		t.Used = true
		s.tokens[c.Hash] = t
	}
	res := attestResult{Subject: subject}
	if !strings.HasPrefix(subject, nodeTokenPrefix) {
		a = Agent{Subject: subject, Generation: a.Generation + 1, State: AgentActive,
			Selectors: slices.Clone(selectors), AttestedAt: c.Now, AttestedNode: c.Node,
			StateBy: a.StateBy, StateAt: a.StateAt}
		s.agents[subject] = a
		res.Generation = a.Generation
	}
	b, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("ha: attest: encode: %w", err)
	}
	return string(b)
}

// applyAgentRenewed records an SVID issued at the subject's current
// generation; one for another generation (a race with an attestation or
// an eviction) changes nothing.
func (f *fsm) applyAgentRenewed(payload []byte) any {
	c, err := decodeValid[agentRenewedCmd]("agent renewed", payload)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.s.agents[c.Subject]
	if !ok || a.Generation != c.Generation || a.State != AgentActive {
		return nil
	}
	a.Serial, a.NotAfter, a.RenewedAt, a.RenewedNode = c.Serial, c.NotAfter, c.Now, c.Node
	f.s.agents[c.Subject] = a
	return nil
}

// applyAgentState evicts, bans or unbans. Evicting or banning a subject the
// registry does not know adds it (it may hold a credential issued before
// the registry existed). Unban leaves the subject evicted: it must attest
// again.
func (f *fsm) applyAgentState(payload []byte) any {
	c, err := decodeValid[agentStateCmd]("agent state", payload)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.s.agents[c.Subject]
	if !ok {
		if c.Op == "unban" {
			return fmt.Errorf("ha: unban %s: %w", c.Subject, ErrNotFound)
		}
		a = Agent{Subject: c.Subject}
	}
	switch c.Op {
	case "evict":
		if a.State != AgentBanned {
			a.State = AgentEvicted
		}
	case "ban":
		a.State = AgentBanned
	case "unban":
		if a.State != AgentBanned {
			return fmt.Errorf("ha: unban %s: it is %s, not banned: %w", c.Subject, a.State, ErrInvalid)
		}
		a.State = AgentEvicted
	}
	a.StateBy, a.StateAt = c.By, c.Now
	f.s.agents[c.Subject] = a
	return nil
}

func (f *fsm) applyRevokeToken(payload []byte) any {
	c, err := decodeValid[revokeTokenCmd]("revoke token", payload)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.s.purgeTokens(c.Now)
	t, ok := f.s.tokens[c.Hash]
	if !ok {
		return fmt.Errorf("ha: revoke token: %w", ErrNotFound)
	}
	if t.Used {
		return fmt.Errorf("ha: revoke token: it was used already (evict the agent instead): %w", ErrInvalid)
	}
	delete(f.s.tokens, c.Hash)
	return nil
}

func (f *fsm) applyCreateTokenBy(payload []byte) any {
	c, err := decodeValid[createTokenByCmd]("create token", payload)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.s.purgeTokens(c.Now)
	if _, ok := f.s.tokens[c.Hash]; ok {
		return fmt.Errorf("ha: create token: %w", ErrExists)
	}
	f.s.tokens[c.Hash] = token{Hash: c.Hash, Agent: c.Agent, ExpiresAt: c.ExpiresAt, Creator: c.Creator, CreatedAt: c.Now}
	return nil
}

// sortedAgents returns the registry sorted by subject (snapshots, lists).
func (s *state) sortedAgents() []Agent {
	out := make([]Agent, 0, len(s.agents))
	for _, k := range slices.Sorted(maps.Keys(s.agents)) {
		out = append(out, s.agents[k].clone())
	}
	return out
}
