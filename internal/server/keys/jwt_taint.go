package keys

import (
	"context"
	"time"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/backoff"
)

// A JWT key tainted with `tier0 ca taint --jwt KID` is replaced at once by
// the node that holds it: a new key is published and signs from then on
// (relying parties that have not refreshed their bundle since may reject
// the new tokens until they do: that is the price of a suspect key).

// taintCheckEvery is how often the rotation loop looks for a taint of its
// signing key.
const taintCheckEvery = 2 * time.Second

type waitResult int

const (
	waitDue waitResult = iota
	waitStopped
	waitTainted
)

// wait sleeps until at, ctx's end, or a taint of the key kid.
func (j *JWTKeys) wait(ctx context.Context, at time.Time, kid string) waitResult {
	t := time.NewTimer(max(0, time.Until(at)))
	defer t.Stop()
	check := time.NewTicker(taintCheckEvery)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return waitStopped
		case <-t.C:
			return waitDue
		case <-check.C:
			if j.tainted(kid) {
				return waitTainted
			}
		}
	}
}

func (j *JWTKeys) tainted(kid string) bool {
	return j.State.CAState().Tainted(ha.TaintJWT, kid)
}

// replaceTainted publishes a new key and makes it the signing key.
func (j *JWTKeys) replaceTainted(ctx context.Context, kid string) (k ca.JWTKey, ok bool) {
	j.Logger.WarnContext(ctx, "jwt signing key tainted: replacing it now", "kid", kid)
	k, err := j.publish(ctx)
	if err == nil {
		err = j.CA.SetJWTKey(k)
	}
	if err != nil {
		if ctx.Err() == nil {
			j.Logger.ErrorContext(ctx, "replace tainted jwt key; retrying", "kid", kid, "err", err)
			_ = backoff.Sleep(ctx, time.Second)
		}
		return k, false
	}
	j.Logger.InfoContext(ctx, "jwt signing key activated", "kid", k.ID, "replaces", kid)
	return k, true
}
