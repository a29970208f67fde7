package ha

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Node attestation state (issue 17): the selectors each agent was attested
// with by a node attestor, the replay keys of evidence already used, and
// the node-selector entries (SPIRE's node aliases) that grant an ID to
// every agent whose attested selectors include the entry's set.
const (
	// cmdRecordAttestation (recordAttestationCmd): refuse evidence whose
	// replay keys were used, else mark them used and store the agent's
	// attested selectors.
	cmdRecordAttestation byte = 0x30
	// cmdCreateNodeEntry (createNodeEntryCmd): an entry with NodeSelectors and
	// no Agent. A new type so that a node that predates node-selector
	// entries cannot store one as an agent entry (it latches diverged and
	// must be upgraded, as for cmdCreateEntryFederated).
	cmdCreateNodeEntry byte = 0x31
)

// ErrReplayed: the attestation evidence (or the instance it names) was
// already used. api maps it to PermissionDenied.
var ErrReplayed = errors.New("ha: attestation evidence already used")

// ReplayKey names one use of attestation evidence (a token's hash, an
// instance ID). Until is when it may be used again; zero: never.
type ReplayKey struct {
	Key   string    `json:"key"`
	Until time.Time `json:"until,omitzero"`
}

// Attestation is a node attestation's outcome: Agent was attested by
// Attestor with Selectors, using evidence identified by Keys.
type Attestation struct {
	Agent     string      `json:"agent"`
	Attestor  string      `json:"attestor"`
	Selectors []string    `json:"selectors,omitempty"` // sorted
	Keys      []ReplayKey `json:"keys,omitempty"`
}

// AgentAttestation is what the state keeps about an attested agent.
type AgentAttestation struct {
	Attestor  string    `json:"attestor"`
	Selectors []string  `json:"selectors,omitempty"` // sorted
	At        time.Time `json:"at"`                  // the leader's clock
}

type recordAttestationCmd struct {
	Attestation
	Now time.Time `json:"now"`
}

func (c *recordAttestationCmd) validate() error {
	if c.Agent == "" || c.Attestor == "" || c.Now.IsZero() {
		return fmt.Errorf("ha: record attestation: agent, attestor and time are required: %w", ErrInvalid)
	}
	for _, k := range c.Keys {
		if k.Key == "" {
			return fmt.Errorf("ha: record attestation: empty replay key: %w", ErrInvalid)
		}
	}
	return nil
}

// MaxReplayWindow bounds how long a replay key is kept: RecordAttestation
// gives a key without an expiry (or a later one) this lifetime, so the
// used-key set is bounded by the attestations of one window.
const MaxReplayWindow = 366 * 24 * time.Hour

// replaySweepEvery is the least log time between two sweeps of expired
// replay keys (each walks the whole set).
const replaySweepEvery = time.Minute

// attestState is the replicated node attestation state (in the snapshot
// as "attest"). Node entries are indexed separately in state.nodeEntries.
type attestState struct {
	Used      map[string]time.Time        `json:"used,omitempty"`   // replay key -> until (zero: forever, only in entries from before MaxReplayWindow)
	Agents    map[string]AgentAttestation `json:"agents,omitempty"` // by agent name
	NextSweep time.Time                   `json:"next_sweep,omitzero"`
}

func (a attestState) clone() attestState {
	c := attestState{Used: maps.Clone(a.Used), Agents: make(map[string]AgentAttestation, len(a.Agents)), NextSweep: a.NextSweep}
	for k, v := range a.Agents {
		v.Selectors = slices.Clone(v.Selectors)
		c.Agents[k] = v
	}
	return c
}

// sweep drops the replay keys expired at now, at most every
// replaySweepEvery. now is the log entry's time (the leader's clock when it
// proposed), so every node sweeps the same keys at the same entry.
func (a *attestState) sweep(now time.Time) {
	if now.Before(a.NextSweep) {
		return
	}
	for k, until := range a.Used {
		if !until.IsZero() && !now.Before(until) {
			delete(a.Used, k)
		}
	}
	a.NextSweep = now.Add(replaySweepEvery)
}

// used reports whether key is used and not expired at now (a key that
// expired is unused even before a sweep drops it).
func (a *attestState) used(key string, now time.Time) bool {
	until, ok := a.Used[key]
	return ok && (until.IsZero() || now.Before(until))
}

func (f *fsm) applyRecordAttestation(payload []byte) any {
	c, err := decodeValid[recordAttestationCmd]("record attestation", payload)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a := &f.s.attest
	a.sweep(c.Now)
	for _, k := range c.Keys {
		if a.used(k.Key, c.Now) {
			return fmt.Errorf("ha: record attestation: %s: %w", k.Key, ErrReplayed)
		}
	}
	if a.Used == nil {
		a.Used = map[string]time.Time{}
	}
	if a.Agents == nil {
		a.Agents = map[string]AgentAttestation{}
	}
	for _, k := range c.Keys {
		a.Used[k.Key] = k.Until
	}
	a.Agents[c.Agent] = AgentAttestation{Attestor: c.Attestor, Selectors: slices.Clone(c.Selectors), At: c.Now}
	return nil
}

func (f *fsm) applyCreateNodeEntry(payload []byte) any {
	c, err := decodeValid[createNodeEntryCmd]("create node entry", payload)
	if err != nil {
		return err
	}
	return f.createEntry(c.Entry)
}

// createNodeEntryCmd is cmdCreateNodeEntry's payload.
type createNodeEntryCmd struct {
	Entry Entry `json:"entry"`
}

func (c *createNodeEntryCmd) validate() error { return validNodeEntry(c.Entry) }

// validNodeEntry checks an entry for cmdCreateNodeEntry.
func validNodeEntry(e Entry) error {
	if e.ID == "" || e.Agent != "" || e.SPIFFEID == "" || e.TTL < 0 || len(e.NodeSelectors) == 0 {
		return fmt.Errorf("ha: create entry: a node-selector entry needs an id, a spiffe id and node selectors, and no agent: %w", ErrInvalid)
	}
	if slices.Contains(e.NodeSelectors, "") {
		return fmt.Errorf("ha: create entry: empty node selector: %w", ErrInvalid)
	}
	return nil
}

// entryKeyOf is the uniqueness key of an entry: agent and SPIFFE ID, or
// for a node-selector entry its selector set and SPIFFE ID.
func entryKeyOf(e Entry) string {
	if len(e.NodeSelectors) > 0 {
		return "\x01" + strings.Join(e.NodeSelectors, "\x00") + "\x01" + e.SPIFFEID
	}
	return entryKey(e.Agent, e.SPIFFEID)
}

// nodeEntriesFor returns the node-selector entries whose selector set the
// agent's attested selectors include.
func (s *state) nodeEntriesFor(agent string) []Entry {
	if len(s.nodeEntries) == 0 {
		return nil
	}
	att, ok := s.attest.Agents[agent]
	if !ok || len(att.Selectors) == 0 {
		return nil
	}
	var out []Entry
	for _, e := range s.nodeEntries {
		if selectorsInclude(att.Selectors, e.NodeSelectors) {
			out = append(out, e)
		}
	}
	return out
}

// nodeEntryFor returns a node-selector entry granting spiffeID that
// applies to agent (the authorization fast path's fallback).
func (s *state) nodeEntryFor(agent, spiffeID string) (Entry, bool) {
	for _, e := range s.nodeEntriesFor(agent) {
		if e.SPIFFEID == spiffeID {
			return e, true
		}
	}
	return Entry{}, false
}

// selectorsInclude reports whether every selector of want is in have
// (sorted).
func selectorsInclude(have, want []string) bool {
	for _, w := range want {
		if _, ok := slices.BinarySearch(have, w); !ok {
			return false
		}
	}
	return true
}

// RecordAttestation stores the outcome of a node attestation: it refuses
// with ErrReplayed when one of a.Keys was used (and has not expired at the
// leader's clock), otherwise marks them used and replaces the agent's
// attested selectors. Selectors are sorted here. A key without an expiry,
// or one later than MaxReplayWindow from now, is kept MaxReplayWindow.
func (n *Node) RecordAttestation(ctx context.Context, a Attestation) error {
	if a.Agent == "" || a.Attestor == "" {
		return fmt.Errorf("ha: record attestation: agent and attestor are required: %w", ErrInvalid)
	}
	a.Selectors = slices.Compact(slices.Sorted(slices.Values(a.Selectors)))
	now := n.cfg.Clock().UTC()
	a.Keys = slices.Clone(a.Keys)
	for i, k := range a.Keys {
		if maxUntil := now.Add(MaxReplayWindow); k.Until.IsZero() || k.Until.After(maxUntil) {
			a.Keys[i].Until = maxUntil
		}
	}
	_, err := n.applyEvent(ctx, "record attestation", cmdRecordAttestation, recordAttestationCmd{Attestation: a, Now: now},
		event{action: "agent.selectors", subject: a.Agent})
	return err
}

// AgentAttestation returns what the state holds about agent's last node
// attestation (none for an agent that joined with a token).
func (n *Node) AgentAttestation(agent string) (AgentAttestation, bool) {
	var a AgentAttestation
	var ok bool
	n.fsm.read(func(s *state) {
		a, ok = s.attest.Agents[agent]
		a.Selectors = slices.Clone(a.Selectors)
	})
	return a, ok
}
