// Package authz is tier0's authorization of SVID requests (invariant 5,
// default deny): an agent gets a SPIFFE ID only when a registration entry
// in the replicated state grants exactly that ID to exactly that agent.
package authz

import (
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/roles"
)

// Entries reads registration entries by agent name (implemented by
// *ha.Node from its local copy of raft state).
type Entries interface {
	EntriesFor(agent string) []ha.Entry
}

// entryLookup is the one-entry lookup *ha.Node has (EntryFor): the
// authorizer uses it when present instead of copying every entry of the
// agent for each SVID.
type entryLookup interface {
	EntryFor(agent, spiffeID string) (ha.Entry, bool)
}

// Authorizer is the entry authorizer (a ca.Authorizer).
type Authorizer struct {
	td      spiffeid.TrustDomain
	entries Entries
}

var _ ca.Authorizer = (*Authorizer)(nil)

// New returns the authorizer of trust domain td over entries.
func New(td spiffeid.TrustDomain, entries Entries) *Authorizer {
	return &Authorizer{td: td, entries: entries}
}

// Authorize grants id to agent when an entry of that agent names id. The
// caller must be an agent ID of this trust domain (structured match, never
// a prefix); the requested ID is compared whole. Anything else wraps
// ca.ErrPermissionDenied.
func (a *Authorizer) Authorize(agent, id spiffeid.ID) (ca.Grant, error) {
	name, ok := roles.AgentName(a.td, agent)
	if !ok {
		return ca.Grant{}, fmt.Errorf("%w: %s is not an agent of %s", ca.ErrPermissionDenied, agent, a.td)
	}
	want := id.String()
	if one, ok := a.entries.(entryLookup); ok {
		if e, found := one.EntryFor(name, want); found {
			return ca.Grant{EntryID: e.ID, TTL: e.TTL}, nil
		}
		return ca.Grant{}, fmt.Errorf("%w: no entry grants %s to agent %q", ca.ErrPermissionDenied, want, name)
	}
	for _, e := range a.entries.EntriesFor(name) {
		if e.SPIFFEID == want {
			return ca.Grant{EntryID: e.ID, TTL: e.TTL}, nil
		}
	}
	return ca.Grant{}, fmt.Errorf("%w: no entry grants %s to agent %q", ca.ErrPermissionDenied, want, name)
}
