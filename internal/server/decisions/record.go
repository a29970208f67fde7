package decisions

import (
	"time"

	"github.com/tier0-ca/tier0/storage"
)

// Record queues a decision that is not a mint's (api: a refused agent or
// operator credential), under the same policy as Wrap's.
func (d *Log) Record(caller, requested string, allowed bool, reason string) {
	switch {
	case d.cfg.Policy.Mode == Off:
		return
	case allowed && d.cfg.Policy.Mode != All:
		return
	}
	d.enqueue(storage.Decision{At: time.Now().UTC(), NodeID: d.cfg.NodeID, Caller: caller, Requested: requested, Allowed: allowed, Reason: reason})
}
