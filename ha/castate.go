package ha

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"
)

// CA root lifecycle, replicated with the trust bundle so that both change
// in one log entry: a root enters the bundle when it is prepared (before it
// signs anything), is used for issuance once activated, and leaves the
// bundle when it was retired long enough ago that nothing it signed is
// still valid (PruneCARoots). No private key is ever part of this state:
// KeyURI names the key (HSM object, KMS key, or a soft key file).

// Root states.
const (
	RootPrepared = "prepared"
	RootActive   = "active"
	RootRetired  = "retired"
)

// cmdCARoots changes the CA roots and the bundle together (caRootsCmd).
const cmdCARoots byte = 0x10

// CARoot is one CA root key and its self-signed certificate.
type CARoot struct {
	ID          string    `json:"id"`      // hex prefix of the certificate's SubjectKeyId
	State       string    `json:"state"`   // RootPrepared, RootActive or RootRetired
	KeyURI      string    `json:"key_uri"` // signer URI; never holds a PIN or key material
	KeyID       string    `json:"key_id"`  // signer.KeyID(), for display
	CertDER     []byte    `json:"cert"`
	NotAfter    time.Time `json:"not_after"`
	PreparedAt  time.Time `json:"prepared_at"`
	ActivatedAt time.Time `json:"activated_at,omitzero"`
	RetiredAt   time.Time `json:"retired_at,omitzero"`
}

// CAState is the replicated list of roots, in the order they were added.
type CAState struct {
	Roots    []CARoot `json:"roots"`
	Sequence uint64   `json:"sequence"` // incremented at every change
	// Nodes are the nodes' key reports, sorted by node (castate_gate.go).
	Nodes []NodeCAKeys `json:"nodes,omitempty"`
	// Taints are the tainted keys (castate_taint.go).
	Taints []Taint `json:"taints,omitempty"`
}

func (c CAState) clone() CAState {
	out := CAState{Sequence: c.Sequence, Roots: make([]CARoot, len(c.Roots)), Taints: slices.Clone(c.Taints)}
	for i, r := range c.Roots {
		r.CertDER = bytes.Clone(r.CertDER)
		out.Roots[i] = r
	}
	for _, r := range c.Nodes {
		out.Nodes = append(out.Nodes, r.clone())
	}
	return out
}

// Active returns the active root, if any.
func (c CAState) Active() (CARoot, bool) {
	for _, r := range c.Roots {
		if r.State == RootActive {
			return r, true
		}
	}
	return CARoot{}, false
}

// Root returns the root with id.
func (c CAState) Root(id string) (CARoot, bool) {
	for _, r := range c.Roots {
		if r.ID == id {
			return r, true
		}
	}
	return CARoot{}, false
}

type caRootsCmd struct {
	Op          string    `json:"op"` // "add", "activate" or "prune"
	Root        CARoot    `json:"root,omitzero"`
	ID          string    `json:"id,omitempty"`
	TrustDomain string    `json:"trust_domain,omitempty"`
	Now         time.Time `json:"now"`
	Before      time.Time `json:"before,omitzero"`
}

// CAState returns a copy of the CA roots from local state.
func (n *Node) CAState() CAState {
	var c CAState
	n.fsm.read(func(s *state) { c = s.ca.clone() })
	return c
}

// AddCARoot records a new root and adds its certificate to the bundle of
// trustDomain in the same entry. r.State must be RootPrepared, or
// RootActive when no root is active yet (first start). ErrExists if the ID
// is taken or an active root exists.
func (n *Node) AddCARoot(ctx context.Context, trustDomain string, r CARoot) (CARoot, error) {
	if trustDomain == "" || r.ID == "" || r.KeyURI == "" || len(r.CertDER) == 0 || (r.State != RootPrepared && r.State != RootActive) {
		return CARoot{}, fmt.Errorf("ha: add ca root: trust domain, id, key uri, certificate and state prepared|active are required: %w", ErrInvalid)
	}
	r.CertDER = bytes.Clone(r.CertDER)
	action := "ca.prepare"
	if r.State == RootActive {
		action = "ca.create" // the first root, active at once
	}
	resp, err := n.applyEvent(ctx, "add ca root", cmdCARoots, caRootsCmd{Op: "add", Root: r, TrustDomain: trustDomain, Now: n.cfg.Clock().UTC()},
		event{action: action, subject: "spiffe://" + trustDomain})
	if err != nil {
		return CARoot{}, err
	}
	return caRootResp("add ca root", resp)
}

// ActivateCARoot makes the prepared root id active and retires the active
// one (which stays in the bundle until pruned).
func (n *Node) ActivateCARoot(ctx context.Context, id string) (CARoot, error) {
	resp, err := n.applyEvent(ctx, "activate ca root", cmdCARoots, caRootsCmd{Op: "activate", ID: id, Now: n.cfg.Clock().UTC()},
		event{action: "ca.activate", subject: n.tdSubject()})
	if err != nil {
		return CARoot{}, err
	}
	return caRootResp("activate ca root", resp)
}

// PruneCARoots removes retired roots retired before `before` (and expired
// roots of any non-active state) from the CA state and the bundle. It
// returns how many were removed; it writes nothing when there are none.
func (n *Node) PruneCARoots(ctx context.Context, before time.Time) (int, error) {
	now := n.cfg.Clock().UTC()
	cnt := 0
	n.fsm.read(func(s *state) { cnt = len(prunable(s.ca, before, now)) })
	if cnt == 0 {
		return 0, nil
	}
	resp, err := n.applyEvent(ctx, "prune ca roots", cmdCARoots, caRootsCmd{Op: "prune", Before: before.UTC(), Now: now},
		event{action: "ca.prune", subject: n.tdSubject()})
	if err != nil {
		return 0, err
	}
	k, _ := resp.(int)
	return k, nil
}

func caRootResp(op string, resp any) (CARoot, error) {
	r, ok := resp.(CARoot)
	if !ok {
		return CARoot{}, fmt.Errorf("ha: %s: unexpected fsm response %T", op, resp)
	}
	return r, nil
}

// prunable returns the IDs of roots that may leave the bundle.
func prunable(c CAState, before, now time.Time) []string {
	var ids []string
	for _, r := range c.Roots {
		retiredLongAgo := r.State == RootRetired && r.RetiredAt.Before(before)
		expired := r.State != RootActive && !r.NotAfter.After(now)
		if retiredLongAgo || expired {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

func (c *caRootsCmd) validate() error {
	switch c.Op {
	case "add":
		if r := c.Root; r.ID == "" || len(r.CertDER) == 0 || (r.State != RootPrepared && r.State != RootActive) {
			return fmt.Errorf("ha: add ca root: id, certificate and state prepared|active are required: %w", ErrInvalid)
		}
	case "activate", "prune":
	default:
		return fmt.Errorf("ha: ca roots: unknown op %q: %w", c.Op, ErrInvalid)
	}
	return nil
}

func (f *fsm) applyCARoots(payload []byte) any {
	c, err := decodeValid[caRootsCmd]("ca roots", payload)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.s
	switch c.Op {
	case "add":
		return s.addCARoot(*c)
	case "activate":
		return s.activateCARoot(*c)
	default: // "prune" (validate refused the others)
		return s.pruneCARoots(*c)
	}
}

func (s *state) addCARoot(c caRootsCmd) any {
	r := c.Root
	if s.bundle.TrustDomain != "" && c.TrustDomain != s.bundle.TrustDomain {
		return fmt.Errorf("ha: add ca root: trust domain %q is not the bundle's %q: %w", c.TrustDomain, s.bundle.TrustDomain, ErrInvalid)
	}
	if _, ok := s.ca.Root(r.ID); ok {
		return fmt.Errorf("ha: add ca root %s: %w", r.ID, ErrExists)
	}
	if _, ok := s.ca.Active(); ok && r.State == RootActive {
		return fmt.Errorf("ha: add ca root %s as active: another root is active: %w", r.ID, ErrExists)
	}
	r.PreparedAt, r.RetiredAt = c.Now, time.Time{}
	if r.State == RootActive {
		r.ActivatedAt = c.Now
	}
	s.ca.Roots = append(slices.Clone(s.ca.Roots), r)
	s.ca.Sequence++
	if !slices.ContainsFunc(s.bundle.Roots, func(b []byte) bool { return bytes.Equal(b, r.CertDER) }) {
		b := s.bundle.clone()
		b.TrustDomain = c.TrustDomain
		b.Roots = append(b.Roots, bytes.Clone(r.CertDER))
		b.Sequence++
		s.bundle = b
	}
	return r
}

func (s *state) activateCARoot(c caRootsCmd) any {
	i := slices.IndexFunc(s.ca.Roots, func(r CARoot) bool { return r.ID == c.ID })
	if i < 0 {
		return fmt.Errorf("ha: activate ca root %q: %w", c.ID, ErrNotFound)
	}
	if st := s.ca.Roots[i].State; st != RootPrepared {
		return fmt.Errorf("ha: activate ca root %s: it is %s, only a prepared root can be activated: %w", c.ID, st, ErrInvalid)
	}
	if !s.ca.Roots[i].NotAfter.After(c.Now) {
		return fmt.Errorf("ha: activate ca root %s: it expired at %s: %w", c.ID, s.ca.Roots[i].NotAfter.Format(time.RFC3339), ErrInvalid)
	}
	roots := slices.Clone(s.ca.Roots)
	for j := range roots {
		if roots[j].State == RootActive {
			roots[j].State, roots[j].RetiredAt = RootRetired, c.Now
		}
	}
	roots[i].State, roots[i].ActivatedAt = RootActive, c.Now
	s.ca.Roots = roots
	s.ca.Sequence++
	return roots[i]
}

func (s *state) pruneCARoots(c caRootsCmd) any {
	ids := prunable(s.ca, c.Before, c.Now)
	if len(ids) == 0 {
		return 0
	}
	var drop [][]byte
	roots := slices.DeleteFunc(slices.Clone(s.ca.Roots), func(r CARoot) bool {
		if slices.Contains(ids, r.ID) {
			drop = append(drop, r.CertDER)
			return true
		}
		return false
	})
	s.ca.Roots = roots
	s.ca.Sequence++
	b := s.bundle.clone()
	b.Roots = slices.DeleteFunc(b.Roots, func(der []byte) bool {
		return slices.ContainsFunc(drop, func(d []byte) bool { return bytes.Equal(d, der) })
	})
	if len(b.Roots) > 0 { // never leave an empty bundle
		b.Sequence++
		s.bundle = b
	}
	return len(ids)
}
