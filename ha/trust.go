package ha

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"
)

// Trust state beside the X.509 roots: the public parts of the JWT-SVID
// signing keys (published before a key signs, removed once expired, so a
// token never outlives its key's place in the bundle). Private keys are
// never part of it: each node keeps its JWT key in memory only.

// cmdTrust changes TrustState (trustCmd).
const cmdTrust byte = 0x20

// JWTKey is the published public part of a JWT-SVID signing key.
type JWTKey struct {
	ID          string    `json:"id"`         // the JWT "kid"
	PublicKey   []byte    `json:"public_key"` // PKIX DER
	NotAfter    time.Time `json:"not_after"`
	Node        string    `json:"node"` // the node holding the private key
	PublishedAt time.Time `json:"published_at"`
}

// TrustState is the replicated JWT keys (sorted by ID) and federation.
type TrustState struct {
	JWTKeys     []JWTKey     `json:"jwt_keys"`
	Federations []Federation `json:"federations,omitempty"` // sorted by trust domain
	Sequence    uint64       `json:"sequence"`              // incremented at every change
}

func (t TrustState) clone() TrustState {
	out := TrustState{Sequence: t.Sequence, JWTKeys: make([]JWTKey, len(t.JWTKeys))}
	for i, k := range t.JWTKeys {
		k.PublicKey = bytes.Clone(k.PublicKey)
		out.JWTKeys[i] = k
	}
	for _, f := range t.Federations {
		out.Federations = append(out.Federations, f.clone())
	}
	return out
}

type trustCmd struct {
	Op         string     `json:"op"` // "publish-jwt-key", "prune-jwt-keys", "set-federation", "delete-federation", "set-federated-bundle"
	Key        JWTKey     `json:"key,omitzero"`
	Federation Federation `json:"federation,omitzero"`
	Now        time.Time  `json:"now"`
}

// TrustState returns a copy of the JWT keys and federation state.
func (n *Node) TrustState() TrustState {
	var t TrustState
	n.fsm.read(func(s *state) { t = s.trust.clone() })
	return t
}

// PublishJWTKey adds the public part of a JWT signing key to the bundle.
// ErrExists if the ID is taken.
func (n *Node) PublishJWTKey(ctx context.Context, k JWTKey) error {
	now := n.cfg.Clock().UTC()
	if k.ID == "" || len(k.PublicKey) == 0 || !k.NotAfter.After(now) {
		return fmt.Errorf("ha: publish jwt key: id, public key and a future expiry are required: %w", ErrInvalid)
	}
	k.PublicKey = bytes.Clone(k.PublicKey)
	_, err := n.applyEvent(ctx, "publish jwt key", cmdTrust, trustCmd{Op: "publish-jwt-key", Key: k, Now: now},
		event{action: "jwt.publish", subject: n.tdSubject()})
	return err
}

// PruneJWTKeys removes expired JWT keys; it writes nothing when none is.
func (n *Node) PruneJWTKeys(ctx context.Context) (int, error) {
	now := n.cfg.Clock().UTC()
	cnt := 0
	n.fsm.read(func(s *state) {
		cnt = len(slices.DeleteFunc(slices.Clone(s.trust.JWTKeys), func(k JWTKey) bool { return k.NotAfter.After(now) }))
	})
	if cnt == 0 {
		return 0, nil
	}
	resp, err := n.applyEvent(ctx, "prune jwt keys", cmdTrust, trustCmd{Op: "prune-jwt-keys", Now: now},
		event{action: "jwt.prune", subject: n.tdSubject()})
	if err != nil {
		return 0, err
	}
	k, _ := resp.(int)
	return k, nil
}

func (c *trustCmd) validate() error {
	switch c.Op {
	case "publish-jwt-key":
		if c.Key.ID == "" || len(c.Key.PublicKey) == 0 {
			return fmt.Errorf("ha: publish jwt key: id and public key are required: %w", ErrInvalid)
		}
	case "set-federation":
		if c.Federation.TrustDomain == "" || c.Federation.Endpoint == "" {
			return fmt.Errorf("ha: set federation: trust domain and endpoint are required: %w", ErrInvalid)
		}
	case "prune-jwt-keys", "delete-federation", "set-federated-bundle":
	default:
		return fmt.Errorf("ha: trust: unknown op %q: %w", c.Op, ErrInvalid)
	}
	return nil
}

func (f *fsm) applyTrust(payload []byte) any {
	c, err := decodeValid[trustCmd]("trust", payload)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.s.trust.clone()
	var resp any
	switch c.Op {
	case "publish-jwt-key":
		k := c.Key
		if slices.ContainsFunc(t.JWTKeys, func(x JWTKey) bool { return x.ID == k.ID }) {
			return fmt.Errorf("ha: publish jwt key %s: %w", k.ID, ErrExists)
		}
		k.PublishedAt = c.Now
		t.JWTKeys = append(t.JWTKeys, k)
		slices.SortFunc(t.JWTKeys, func(a, b JWTKey) int { return cmpString(a.ID, b.ID) })
	case "prune-jwt-keys":
		before := len(t.JWTKeys)
		t.JWTKeys = slices.DeleteFunc(t.JWTKeys, func(k JWTKey) bool { return !k.NotAfter.After(c.Now) })
		resp = before - len(t.JWTKeys)
		if resp == 0 {
			return 0
		}
	case "set-federation", "delete-federation", "set-federated-bundle":
		var err error
		if resp, err = t.applyFederation(*c); err != nil {
			return err
		}
	default:
		return fmt.Errorf("ha: trust: unknown op %q: %w", c.Op, ErrInvalid)
	}
	t.Sequence++
	f.s.trust = t
	return resp
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
