package ca

import (
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// FailureRecorder is an Authorizer that also hears when a request it
// allowed was then not issued (the CA key could not sign, the journal
// could not commit, the TTL did not fit): the decision log records such a
// request as a failure, not as an allow.
type FailureRecorder interface {
	IssueFailed(agent, id spiffeid.ID, g Grant, err error)
}

// issueFailed tells the Authorizer, when it listens, that the allowed
// request (agent, id) failed with err.
func (c *CA) issueFailed(agent, id spiffeid.ID, g Grant, err error) {
	if fr, ok := c.cfg.Authorizer.(FailureRecorder); ok {
		fr.IssueFailed(agent, id, g, err)
	}
}

// FailureClass names the kind of a failed request's error in a few
// words: its sentinel ("issuer error", "invalid ttl"), or the journal's
// innermost error ("no space left on device"). It never carries the
// signer's own text (key ARNs, endpoints).
func FailureClass(err error) string { return errClass(err) }
