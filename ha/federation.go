package ha

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"
)

// Federation is a relationship with a foreign trust domain: where its
// SPIFFE bundle endpoint is, how to authenticate it, and the last bundle
// fetched from it (SPIFFE bundle JSON, kept when a later fetch fails).
type Federation struct {
	TrustDomain      string        `json:"trust_domain"`
	Endpoint         string        `json:"endpoint"`
	Profile          string        `json:"profile"`                      // "https_spiffe" or "https_web"
	EndpointSPIFFEID string        `json:"endpoint_spiffe_id,omitempty"` // https_spiffe only
	Bundle           []byte        `json:"bundle,omitempty"`             // SPIFFE bundle JSON
	RefreshHint      time.Duration `json:"refresh_hint,omitempty"`
	UpdatedAt        time.Time     `json:"updated_at,omitzero"` // of Bundle
	CreatedAt        time.Time     `json:"created_at"`
}

func (f Federation) clone() Federation {
	f.Bundle = bytes.Clone(f.Bundle)
	return f
}

// SetFederation creates or updates the relationship with f.TrustDomain. A
// non-empty f.Bundle (initial trust) replaces the stored bundle; an empty
// one keeps it.
func (n *Node) SetFederation(ctx context.Context, f Federation) error {
	if f.TrustDomain == "" || f.Endpoint == "" || (f.Profile != "https_spiffe" && f.Profile != "https_web") {
		return fmt.Errorf("ha: set federation: trust domain, endpoint and profile https_spiffe|https_web are required: %w", ErrInvalid)
	}
	_, err := n.applyEvent(ctx, "set federation", cmdTrust, trustCmd{Op: "set-federation", Federation: f.clone(), Now: n.cfg.Clock().UTC()},
		event{action: "federation.set", subject: "spiffe://" + f.TrustDomain})
	return err
}

// DeleteFederation removes the relationship. ErrNotFound if none.
func (n *Node) DeleteFederation(ctx context.Context, trustDomain string) error {
	_, err := n.applyEvent(ctx, "delete federation", cmdTrust, trustCmd{Op: "delete-federation", Federation: Federation{TrustDomain: trustDomain}, Now: n.cfg.Clock().UTC()},
		event{action: "federation.delete", subject: "spiffe://" + trustDomain})
	return err
}

// SetFederatedBundle stores a freshly fetched bundle of trustDomain.
// ErrNotFound if there is no relationship with it.
func (n *Node) SetFederatedBundle(ctx context.Context, trustDomain string, bundle []byte, refreshHint time.Duration) error {
	if len(bundle) == 0 {
		return fmt.Errorf("ha: set federated bundle: empty bundle: %w", ErrInvalid)
	}
	sum := sha256.Sum256(bundle)
	_, err := n.applyEvent(ctx, "set federated bundle", cmdTrust, trustCmd{Op: "set-federated-bundle",
		Federation: Federation{TrustDomain: trustDomain, Bundle: bytes.Clone(bundle), RefreshHint: refreshHint}, Now: n.cfg.Clock().UTC()},
		event{action: "federation.bundle", subject: "spiffe://" + trustDomain, detail: map[string]any{
			"trust_domain": trustDomain, "bundle_sha256": hex.EncodeToString(sum[:]), "refresh_hint": refreshHint.String()}})
	return err
}

// applyFederation runs under the FSM lock on a copy of the trust state.
func (t *TrustState) applyFederation(c trustCmd) (any, error) {
	f := c.Federation
	i := slices.IndexFunc(t.Federations, func(x Federation) bool { return x.TrustDomain == f.TrustDomain })
	switch c.Op {
	case "set-federation":
		f.CreatedAt = c.Now
		if len(f.Bundle) > 0 {
			f.UpdatedAt = c.Now
		}
		if i >= 0 {
			old := t.Federations[i]
			f.CreatedAt = old.CreatedAt
			if len(f.Bundle) == 0 {
				f.Bundle, f.RefreshHint, f.UpdatedAt = old.Bundle, old.RefreshHint, old.UpdatedAt
			}
			t.Federations[i] = f
			return nil, nil
		}
		t.Federations = append(t.Federations, f)
		slices.SortFunc(t.Federations, func(a, b Federation) int { return cmpString(a.TrustDomain, b.TrustDomain) })
	case "delete-federation":
		if i < 0 {
			return nil, fmt.Errorf("ha: delete federation %s: %w", f.TrustDomain, ErrNotFound)
		}
		t.Federations = slices.Delete(t.Federations, i, i+1)
	case "set-federated-bundle":
		if i < 0 {
			return nil, fmt.Errorf("ha: set federated bundle %s: %w", f.TrustDomain, ErrNotFound)
		}
		t.Federations[i].Bundle, t.Federations[i].RefreshHint, t.Federations[i].UpdatedAt = f.Bundle, f.RefreshHint, c.Now
	}
	return nil, nil
}
