package client

import (
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// gate holds the calls to one server address after it refused one with a
// retry-after hint: an overloaded server is overloaded for every call of
// this client, not just the refused one. Times are monotonic (offsets from
// base), so a wall-clock step cannot stretch a hold.
type gate struct {
	base  time.Time
	until atomic.Int64  // offset from base (ns) before which no call is sent
	code  atomic.Uint32 // the refusal's code (ResourceExhausted or Unavailable)
}

// hold closes the gate until d from now (or later, if it is already closed
// for longer), after a refusal with code.
func (g *gate) hold(d time.Duration, code codes.Code) {
	until := int64(time.Since(g.base) + d)
	for {
		cur := g.until.Load()
		if cur >= until {
			return
		}
		if g.until.CompareAndSwap(cur, until) {
			g.code.Store(uint32(code))
			return
		}
	}
}

// remaining returns how long the gate stays closed (<= 0: open) and the
// closing it belongs to.
func (g *gate) remaining() (time.Duration, int64) {
	u := g.until.Load()
	return time.Duration(u) - time.Since(g.base), u
}

// choose returns the address for the next attempt: the first from `from`
// on whose gate is open, else, after waiting for it, the one whose gate
// opens soonest (see waitGate).
func (c *Client) choose(ctx context.Context, from int) (int, error) {
	n := len(c.gates)
	soonest, least := from, time.Duration(0)
	for k := range n {
		j := (from + k) % n
		d, _ := c.gates[j].remaining()
		if d <= 0 {
			return j, nil
		}
		if k == 0 || d < least {
			soonest, least = j, d
		}
	}
	return soonest, c.waitGate(ctx, soonest)
}

// waitGate waits until address i's gate opens: the time left scaled by a
// uniform factor in [0.8, 1.2), so that the calls held back by one refusal
// come back spread out rather than in lockstep (some a little before the
// hint has passed). A call that wakes to a gate closed again meanwhile
// (another call was refused) waits again. A call whose deadline comes
// before the gate opens fails at once with the refusal's code
// (ResourceExhausted or Unavailable; made here, it carries no retry-after
// trailer: the message says how long) instead of sleeping until its
// deadline unsent. This is how an agent honours
// retry-after: it stops sending to that server, not just the refused call;
// the refused calls' retries and new calls alike queue here, in the agent,
// instead of in (or bouncing off) the overloaded server.
func (c *Client) waitGate(ctx context.Context, i int) error {
	var waited int64
	for {
		d, u := c.gates[i].remaining()
		if d <= 0 || u == waited {
			return nil
		}
		sleep := c.jittered(d, 0.2)
		if dl, ok := ctx.Deadline(); ok {
			left := time.Until(dl)
			if left < d {
				code := codes.Code(c.gates[i].code.Load())
				if code != codes.Unavailable {
					code = codes.ResourceExhausted
				}
				return status.Errorf(code, "client: %s asked to retry in %v, after this call's deadline", c.addrs[i], d.Round(time.Millisecond))
			}
			sleep = min(sleep, max(d, left-left/10)) // the jitter must not eat the deadline
		}
		if err := c.sleep(ctx, sleep); err != nil {
			return status.FromContextError(err).Err()
		}
		waited = u
	}
}
