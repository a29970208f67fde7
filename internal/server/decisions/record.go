package decisions

import (
	"math/rand/v2"
	"time"

	"github.com/tier0-ca/tier0/storage"
)

// FailedPrefix starts the Reason of a decision whose request was allowed
// but not issued (the CA key could not sign, the journal could not
// commit): it is stored with Allowed false, and `tier0 audit decisions`
// shows it as "fail", not "allow" or "deny".
const FailedPrefix = "failed: "

// Decide queues one decision under the policy: an allow is recorded under
// All, under Sample with probability Rate, never under Deny; a refusal
// (Allowed false: a denial or a failure, any code) under every mode but
// Off. At and NodeID are filled when zero. The api calls it once per
// requested SPIFFE ID of a mint and once per refused call (api/decisions.go).
func (d *Log) Decide(dec storage.Decision) {
	switch {
	case d.cfg.Policy.Mode == Off:
		return
	case dec.Allowed && d.cfg.Policy.Mode == Deny:
		return
	case dec.Allowed && d.cfg.Policy.Mode == Sample && rand.Float64() >= d.cfg.Policy.Rate:
		return
	}
	if dec.At.IsZero() {
		dec.At = time.Now().UTC()
	}
	if dec.NodeID == "" {
		dec.NodeID = d.cfg.NodeID
	}
	d.enqueue(dec)
}

// failureCodes are the codes of a refusal that is tier0's own failure, not
// a decision about the caller (Kind "fail").
var failureCodes = map[string]bool{"Unavailable": true, "Internal": true, "ResourceExhausted": true,
	"DeadlineExceeded": true, "Canceled": true, "Unknown": true, "Aborted": true, "DataLoss": true, "Unimplemented": true}

// Kind names a decision for display: "allow", "fail" (allowed but not
// issued, or refused by a fault or limit of tier0's: Unavailable,
// Internal, ResourceExhausted, ...) or "deny".
func Kind(allowed bool, code, reason string) string {
	switch {
	case allowed:
		return "allow"
	case len(reason) >= len(FailedPrefix) && reason[:len(FailedPrefix)] == FailedPrefix, failureCodes[code]:
		return "fail"
	}
	return "deny"
}
