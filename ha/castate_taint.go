package ha

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Key taint, in the spirit of SPIRE's LocalAuthority taint: an operator
// who suspects a key marks it tainted; the mark is replicated, agents see
// it in the bundle response at their next sync and re-issue every SVID
// that descends from the key at once instead of at half-life, so the key
// can leave the bundle minutes later without an outage. A tainted X.509
// root must not be the active one (activate a new root first); a tainted
// JWT key is replaced at once by the node that holds it.

// cmdCATaint taints a key (caTaintCmd). Not ignorable: a node that skipped
// it would let its agents keep SVIDs under the suspect key.
const cmdCATaint byte = 0x19

// Taint kinds.
const (
	TaintX509 = "x509" // a CA root, by CARoot.ID
	TaintJWT  = "jwt"  // a JWT signing key, by its kid
)

// Taint marks one key.
type Taint struct {
	Kind string    `json:"kind"` // TaintX509 or TaintJWT
	ID   string    `json:"id"`
	At   time.Time `json:"at"`
}

type caTaintCmd struct {
	Kind string    `json:"kind"`
	ID   string    `json:"id"`
	Now  time.Time `json:"now"`
}

func (c *caTaintCmd) validate() error {
	if (c.Kind != TaintX509 && c.Kind != TaintJWT) || c.ID == "" || len(c.ID) > 256 {
		return fmt.Errorf("ha: taint: kind x509|jwt and a key id are required: %w", ErrInvalid)
	}
	return nil
}

// Tainted reports whether the key kind/id is tainted.
func (c CAState) Tainted(kind, id string) bool {
	return slices.ContainsFunc(c.Taints, func(t Taint) bool { return t.Kind == kind && t.ID == id })
}

// TaintedIDs returns the IDs of the tainted keys of kind.
func (c CAState) TaintedIDs(kind string) []string {
	var ids []string
	for _, t := range c.Taints {
		if t.Kind == kind {
			ids = append(ids, t.ID)
		}
	}
	return ids
}

// TaintCAKey taints a CA root (TaintX509, by root ID) or a JWT key
// (TaintJWT, by kid). ErrNotFound for an unknown key, ErrInvalid for the
// active root, ErrExists when it is tainted already.
func (n *Node) TaintCAKey(ctx context.Context, kind, id string) error {
	_, err := n.applyEvent(ctx, "taint key", cmdCATaint, caTaintCmd{Kind: kind, ID: id, Now: n.cfg.Clock().UTC()},
		event{action: "ca.taint", subject: n.tdSubject()})
	return err
}

func (f *fsm) applyCATaint(payload []byte) any {
	c, err := decodeValid[caTaintCmd]("taint", payload)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.s
	switch c.Kind {
	case TaintX509:
		r, ok := s.ca.Root(c.ID)
		if !ok {
			return fmt.Errorf("ha: taint root %q: %w", c.ID, ErrNotFound)
		}
		if r.State != RootRetired {
			return fmt.Errorf("ha: taint root %s: it is %s; only a replaced root can be tainted: prepare and activate a new root first: %w", c.ID, r.State, ErrInvalid)
		}
	default: // TaintJWT
		if !slices.ContainsFunc(s.trust.JWTKeys, func(k JWTKey) bool { return k.ID == c.ID }) {
			return fmt.Errorf("ha: taint jwt key %q: %w", c.ID, ErrNotFound)
		}
	}
	if s.ca.Tainted(c.Kind, c.ID) {
		return fmt.Errorf("ha: taint %s key %s: already tainted: %w", c.Kind, c.ID, ErrExists)
	}
	// Keep only taints whose key is still published.
	taints := slices.DeleteFunc(slices.Clone(s.ca.Taints), func(t Taint) bool {
		if t.Kind == TaintX509 {
			_, ok := s.ca.Root(t.ID)
			return !ok
		}
		return !slices.ContainsFunc(s.trust.JWTKeys, func(k JWTKey) bool { return k.ID == t.ID })
	})
	s.ca.Taints = append(taints, Taint{Kind: c.Kind, ID: c.ID, At: c.Now})
	s.ca.Sequence++
	return nil
}
