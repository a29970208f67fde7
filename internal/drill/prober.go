package drill

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/api/client"
)

// prober mints probe SVIDs back to back (one at a time, 2 s per attempt)
// and keeps the results for the failover drill.
type prober struct {
	c      *client.Client
	td     spiffeid.TrustDomain
	bundle *x509bundle.Bundle

	mu       sync.Mutex
	requests int
	failed   int
	serials  []string  // every SVID received and verified
	good     []probeAt // start and end of each good probe, in order
	lastErr  error
}

type probeAt struct{ start, end time.Time }

func (p *prober) run(ctx context.Context) {
	for ctx.Err() == nil {
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		serial, err := mintProbe(cctx, p.c, p.td, p.bundle)
		cancel()
		if ctx.Err() != nil && err != nil {
			return // stopped mid-request: not a failure of the cluster
		}
		p.mu.Lock()
		p.requests++
		if err != nil {
			p.failed++
			p.lastErr = err
		} else {
			p.serials = append(p.serials, serial)
			p.good = append(p.good, probeAt{start, time.Now()})
		}
		p.mu.Unlock()
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// waitGood waits for n good probes that started after t.
func (p *prober) waitGood(ctx context.Context, t time.Time, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		got := 0
		for _, g := range p.good {
			if g.start.After(t) {
				got++
			}
		}
		last := p.lastErr
		p.mu.Unlock()
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d good probes within %v (last error: %v)", got, n, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond): // polling interval
		}
	}
}

// firstGoodAfter is the end of the first good probe started after t.
func (p *prober) firstGoodAfter(t time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, g := range p.good {
		if g.start.After(t) {
			return g.end
		}
	}
	return time.Time{}
}

// maxGap is the longest time between the ends of consecutive good probes.
// Call with p.mu held.
func (p *prober) maxGap(since time.Time) time.Duration {
	var gap time.Duration
	prev := since
	for _, g := range p.good {
		gap = max(gap, g.end.Sub(prev))
		prev = g.end
	}
	return gap
}
