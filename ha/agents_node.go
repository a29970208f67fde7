package ha

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// credentialWait bounds how long CheckCredential waits for this node to
// apply an attestation that a credential shows it has not applied yet (a
// follower a few entries behind the leader that issued it).
const credentialWait = 3 * time.Second

// Attest consumes the join token tokenHash and bumps its subject's
// attestation generation in one entry. It returns the subject and its new
// generation (0 for a cluster node token). ErrTokenInvalid for an unknown,
// used or expired token; ErrDenied for a banned subject.
func (n *Node) Attest(ctx context.Context, tokenHash string) (subject string, generation uint64, err error) {
	invalid := fmt.Errorf("ha: attest: %w", ErrTokenInvalid)
	if validTokenHash(tokenHash) != nil {
		return "", 0, invalid
	}
	now := n.cfg.Clock().UTC()
	var known bool
	n.fsm.read(func(s *state) {
		t, ok := s.tokens[tokenHash]
		known = ok && !t.Used && now.Before(t.ExpiresAt)
	})
	if !known && n.isLeader() { // guessing costs no raft write (as ConsumeToken)
		return "", 0, invalid
	}
	resp, err := n.applyEvent(ctx, "attest", cmdAttest, attestCmd{Hash: tokenHash, Now: now, Node: n.cfg.NodeID},
		event{action: "token.consume", subject: tokenSubject(n, tokenHash)})
	if err != nil {
		return "", 0, err
	}
	str, ok := resp.(string)
	var res attestResult
	if !ok || json.Unmarshal([]byte(str), &res) != nil {
		return "", 0, fmt.Errorf("ha: attest: unexpected fsm response %T", resp)
	}
	return res.Subject, res.Generation, nil
}

// AttestSubject records an attestation the server verified itself (a
// node attestor's evidence) for agent subject with selectors, and returns
// the subject's new generation. ErrDenied for a banned subject.
func (n *Node) AttestSubject(ctx context.Context, subject string, selectors []string) (uint64, error) {
	resp, err := n.applyEvent(ctx, "attest", cmdAttest, attestCmd{Subject: subject, Selectors: slices.Clone(selectors), Now: n.cfg.Clock().UTC(), Node: n.cfg.NodeID},
		event{action: "agent.attest", subject: subject})
	if err != nil {
		return 0, err
	}
	str, ok := resp.(string)
	var res attestResult
	if !ok || json.Unmarshal([]byte(str), &res) != nil {
		return 0, fmt.Errorf("ha: attest: unexpected fsm response %T", resp)
	}
	return res.Generation, nil
}

// AgentRenewed records that subject got an SVID (serial, notAfter) at
// generation; it changes nothing if that is no longer the current one.
func (n *Node) AgentRenewed(ctx context.Context, subject string, generation uint64, serial string, notAfter time.Time) error {
	_, err := n.apply(ctx, "agent renewed", cmdAgentRenewed, agentRenewedCmd{Subject: subject, Generation: generation,
		Serial: serial, NotAfter: notAfter.UTC(), Now: n.cfg.Clock().UTC(), Node: n.cfg.NodeID})
	return err
}

// SetAgentState evicts, bans or unbans subject (op "evict", "ban",
// "unban"), recording by, and returns the record as committed.
func (n *Node) SetAgentState(ctx context.Context, subject, op, by string) (Agent, error) {
	now := n.cfg.Clock().UTC()
	if _, err := n.applyEvent(ctx, op, cmdAgentState, agentStateCmd{Subject: subject, Op: op, By: by, Now: now},
		event{action: "agent." + op, subject: subject}); err != nil {
		return Agent{}, err
	}
	// Applied here when apply returns on the leader; a follower that
	// forwarded it may apply it a moment later.
	deadline := time.Now().Add(credentialWait)
	for {
		a, ok := n.Agent(subject)
		if ok && a.StateAt.Equal(now) && a.StateBy == by || time.Now().After(deadline) {
			return a, nil
		}
		select {
		case <-ctx.Done():
			return a, nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Agents returns the registry from local state, sorted by subject.
func (n *Node) Agents() []Agent {
	var out []Agent
	n.fsm.read(func(s *state) { out = s.sortedAgents() })
	return out
}

// Agent returns subject's record from local state.
func (n *Node) Agent(subject string) (Agent, bool) {
	var a Agent
	var ok bool
	n.fsm.read(func(s *state) { a, ok = s.agents[subject]; a = a.clone() })
	return a, ok
}

// CheckCredential decides, from local state, whether a credential of
// subject issued at generation (hasGen false: it carries none, it was
// issued before the registry existed) may still be used: nil if subject is
// active at exactly that generation, or unknown to the registry and the
// credential carries no generation; ErrDenied if subject is evicted or
// banned or the credential is older than its current generation. A
// credential newer than this node's state (an attestation not applied here
// yet) is waited for, at most credentialWait, then ErrUnavailable.
func (n *Node) CheckCredential(ctx context.Context, subject string, generation uint64, hasGen bool) error {
	deadline := time.Now().Add(credentialWait)
	for {
		a, ok := n.Agent(subject)
		switch {
		case !ok && !hasGen:
			return nil
		case ok && a.State == AgentBanned:
			return fmt.Errorf("ha: %s is banned: %w", subject, ErrDenied)
		case ok && a.State == AgentEvicted:
			return fmt.Errorf("ha: %s was evicted: attest again with a new join token: %w", subject, ErrDenied)
		case ok && !hasGen:
			return fmt.Errorf("ha: this credential of %s predates its attestation (generation %d): %w", subject, a.Generation, ErrDenied)
		case ok && generation == a.Generation:
			return nil
		case ok && generation < a.Generation:
			return fmt.Errorf("ha: this credential of %s (attestation %d) was superseded by attestation %d: %w", subject, generation, a.Generation, ErrDenied)
		}
		// Newer than what this node has applied.
		if time.Now().After(deadline) {
			return fmt.Errorf("ha: %s attestation %d not applied on this node yet: %w", subject, generation, ErrUnavailable)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ha: check credential: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// CreateTokenBy is CreateToken that records its creator.
func (n *Node) CreateTokenBy(ctx context.Context, tokenHash, subject string, expiresAt time.Time, creator string) error {
	if err := validTokenHash(tokenHash); err != nil {
		return fmt.Errorf("ha: create token: %w", err)
	}
	now := n.cfg.Clock().UTC()
	if subject == "" || !expiresAt.After(now) {
		return fmt.Errorf("ha: create token: subject and a future expiry are required: %w", ErrInvalid)
	}
	_, err := n.applyEvent(ctx, "create token", cmdCreateTokenBy, createTokenByCmd{
		createTokenCmd: createTokenCmd{Hash: tokenHash, Agent: subject, ExpiresAt: expiresAt.UTC(), Now: now}, Creator: creator,
	}, event{action: "token.create", subject: subject})
	return err
}

// Tokens lists the join tokens in local state that have not expired,
// sorted by hash.
func (n *Node) Tokens() []TokenInfo {
	now := n.cfg.Clock()
	var out []TokenInfo
	n.fsm.read(func(s *state) {
		for _, h := range slices.Sorted(maps.Keys(s.tokens)) {
			t := s.tokens[h]
			if now.Before(t.ExpiresAt) {
				out = append(out, TokenInfo{Hash: t.Hash, Subject: t.Agent, ExpiresAt: t.ExpiresAt, Used: t.Used, Creator: t.Creator, CreatedAt: t.CreatedAt})
			}
		}
	})
	return out
}

// RevokeToken deletes the unused token whose hash starts with prefix (at
// least 8 hex digits, naming exactly one token) and returns it.
func (n *Node) RevokeToken(ctx context.Context, prefix, by string) (TokenInfo, error) {
	if len(prefix) < 8 {
		return TokenInfo{}, fmt.Errorf("ha: revoke token: give at least 8 hex digits of the hash: %w", ErrInvalid)
	}
	var match []TokenInfo
	for _, t := range n.Tokens() {
		if strings.HasPrefix(t.Hash, prefix) {
			match = append(match, t)
		}
	}
	switch len(match) {
	case 0:
		return TokenInfo{}, fmt.Errorf("ha: revoke token %s: %w", prefix, ErrNotFound)
	case 1:
	default:
		return TokenInfo{}, fmt.Errorf("ha: revoke token %s: %d tokens match, give more digits: %w", prefix, len(match), ErrInvalid)
	}
	_, err := n.applyEvent(ctx, "revoke token", cmdRevokeToken, revokeTokenCmd{Hash: match[0].Hash, By: by, Now: n.cfg.Clock().UTC()},
		event{action: "token.revoke", subject: match[0].Subject})
	return match[0], err
}
