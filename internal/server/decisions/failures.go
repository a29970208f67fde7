package decisions

import (
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/storage"
)

// FailedPrefix starts the Reason of a decision whose request was allowed
// but not issued (the CA key could not sign, the journal could not
// commit): it is stored with Allowed false, and `tier0 audit decisions`
// shows it as "fail", not "allow" or "deny".
const FailedPrefix = "failed: "

// amendWindow is how far back from the newest pending decision
// IssueFailed looks for the allow it amends (the allow was queued
// moments earlier, by the same request).
const amendWindow = 4096

// recorder is the Authorizer Wrap returns: it records each decision, and
// (ca.FailureRecorder) turns the allow of a request that then failed
// into a failure.
type recorder struct {
	d    *Log
	next ca.Authorizer
}

var _ ca.FailureRecorder = (*recorder)(nil)

func (r *recorder) Authorize(agent, id spiffeid.ID) (ca.Grant, error) {
	g, err := r.next.Authorize(agent, id)
	r.d.add(agent, id, g, err)
	return g, err
}

// IssueFailed records that the allowed request (agent, id) was not
// issued: the pending allow it queued becomes a failure, or, when that
// allow was already written (or not recorded under the policy), a failure
// is added. Failures are recorded under every policy but Off, as denials.
func (r *recorder) IssueFailed(agent, id spiffeid.ID, g ca.Grant, err error) {
	d := r.d
	reason := FailedPrefix + "allowed by entry " + g.EntryID + " but not issued: " + ca.FailureClass(err)
	caller, requested := agent.String(), id.String()
	d.mu.Lock()
	for i := len(d.pending) - 1; i >= max(d.inFlight, len(d.pending)-amendWindow); i-- {
		p := &d.pending[i]
		if p.Allowed && p.Caller == caller && p.Requested == requested {
			p.Allowed, p.Reason = false, reason
			d.mu.Unlock()
			return
		}
	}
	d.mu.Unlock()
	d.enqueue(storage.Decision{At: time.Now().UTC(), NodeID: d.cfg.NodeID, Caller: caller, Requested: requested, Reason: reason})
}
