package ha

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"time"
)

// CreateEntry adds a registration entry. If e.ID is empty a random 16-hex-
// digit ID is generated here (before apply, so the FSM stays deterministic);
// CreatedAt is stamped with the leader's clock. ErrExists if the agent
// already has an entry for e.SPIFFEID.
func (n *Node) CreateEntry(ctx context.Context, e Entry) (Entry, error) {
	if e.ID == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return Entry{}, fmt.Errorf("ha: create entry: %w", err)
		}
		e.ID = hex.EncodeToString(b[:])
	}
	typ := cmdCreateEntry
	switch {
	case len(e.NodeSelectors) > 0:
		e.NodeSelectors = slices.Compact(slices.Sorted(slices.Values(e.NodeSelectors)))
		if err := validNodeEntry(e); err != nil {
			return Entry{}, err
		}
		typ = cmdCreateNodeEntry // attest.go: old nodes refuse it
	case e.Agent == "" || e.SPIFFEID == "" || e.TTL < 0:
		return Entry{}, fmt.Errorf("ha: create entry: agent and spiffe id are required, ttl >= 0: %w", ErrInvalid)
	case len(e.FederatesWith) > 0:
		typ = cmdCreateEntryFederated // see command.go: old nodes refuse it
	}
	e.CreatedAt = n.cfg.Clock().UTC()
	var cmd any = createEntryCmd{Entry: e}
	if typ == cmdCreateNodeEntry {
		cmd = createNodeEntryCmd{Entry: e}
	}
	resp, err := n.applyEvent(ctx, "create entry", typ, cmd, event{action: "entry.create", subject: entrySubject(e)})
	if err != nil {
		return Entry{}, err
	}
	out, ok := resp.(Entry)
	if !ok {
		return Entry{}, fmt.Errorf("ha: create entry: unexpected fsm response %T", resp)
	}
	return out, nil
}

// DeleteEntry removes an entry. ErrNotFound if it does not exist.
func (n *Node) DeleteEntry(ctx context.Context, id string) error {
	e := Entry{ID: id}
	n.fsm.read(func(s *state) {
		if x, ok := s.entry(id); ok {
			e = x
		}
	})
	_, err := n.applyEvent(ctx, "delete entry", cmdDeleteEntry, deleteEntryCmd{ID: id}, event{action: "entry.delete",
		subject: entrySubject(e), detail: map[string]any{"id": id, "entry": e}})
	return err
}

// ListEntries returns the entries of agent ("" = all), sorted by SPIFFEID,
// from local state.
func (n *Node) ListEntries(agent string) []Entry {
	if agent != "" {
		return n.EntriesFor(agent)
	}
	var out []Entry
	n.fsm.read(func(s *state) {
		out = s.allEntries()
	})
	sortEntries(out)
	return out
}

// EntriesFor returns agent's entries sorted by SPIFFEID from the local
// per-agent index (the authorization fast path), with the node-selector
// entries whose selectors the agent was attested with (attest.go).
func (n *Node) EntriesFor(agent string) []Entry {
	var out []Entry
	n.fsm.read(func(s *state) {
		out = slices.Clone(s.byAgent[agent])
		if ne := s.nodeEntriesFor(agent); len(ne) > 0 {
			out = append(out, ne...)
			sortEntries(out)
		}
	})
	return out
}

// CreateToken stores a join token for agent. tokenHash is the lowercase hex
// SHA-256 of the token; the token itself never reaches the node's state.
func (n *Node) CreateToken(ctx context.Context, tokenHash, agent string, expiresAt time.Time) error {
	if err := validTokenHash(tokenHash); err != nil {
		return fmt.Errorf("ha: create token: %w", err)
	}
	now := n.cfg.Clock().UTC()
	if agent == "" || !expiresAt.After(now) {
		return fmt.Errorf("ha: create token: agent and a future expiry are required: %w", ErrInvalid)
	}
	_, err := n.applyEvent(ctx, "create token", cmdCreateToken, createTokenCmd{
		Hash: tokenHash, Agent: agent, ExpiresAt: expiresAt.UTC(), Now: now,
	}, event{action: "token.create", subject: agent})
	return err
}

// ConsumeToken atomically marks the token used and returns its agent.
// ErrTokenInvalid if it is unknown, used or expired (at the leader's clock).
func (n *Node) ConsumeToken(ctx context.Context, tokenHash string) (string, error) {
	invalid := fmt.Errorf("ha: consume token: %w", ErrTokenInvalid)
	if validTokenHash(tokenHash) != nil {
		return "", invalid
	}
	now := n.cfg.Clock().UTC()
	// Local pre-check so that guessing costs no raft write. On the leader
	// local state has every acknowledged token; the FSM decides.
	var known bool
	n.fsm.read(func(s *state) {
		t, ok := s.tokens[tokenHash]
		known = ok && !t.Used && now.Before(t.ExpiresAt)
	})
	if !known && n.isLeader() {
		return "", invalid
	}
	resp, err := n.applyEvent(ctx, "consume token", cmdConsumeToken, consumeTokenCmd{Hash: tokenHash, Now: now},
		event{action: "token.consume", subject: tokenSubject(n, tokenHash)})
	if err != nil {
		return "", err
	}
	agent, ok := resp.(string)
	if !ok {
		return "", fmt.Errorf("ha: consume token: unexpected fsm response %T", resp)
	}
	return agent, nil
}

// Bundle returns a copy of the trust bundle.
func (n *Node) Bundle() Bundle {
	var b Bundle
	n.fsm.read(func(s *state) { b = s.bundle.clone() })
	return b
}

// SetBundle replaces the bundle's roots; the FSM increments Sequence.
func (n *Node) SetBundle(ctx context.Context, roots [][]byte, trustDomain string) error {
	if trustDomain == "" || len(roots) == 0 || slices.ContainsFunc(roots, func(r []byte) bool { return len(r) == 0 }) {
		return fmt.Errorf("ha: set bundle: trust domain and non-empty roots are required: %w", ErrInvalid)
	}
	rs := make([][]byte, len(roots))
	for i, r := range roots {
		rs[i] = bytes.Clone(r)
	}
	_, err := n.applyEvent(ctx, "set bundle", cmdSetBundle, setBundleCmd{TrustDomain: trustDomain, Roots: rs},
		event{action: "bundle.set", subject: "spiffe://" + trustDomain})
	return err
}
