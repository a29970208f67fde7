package loadtest

import (
	"context"
	"time"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// bundleEvery is how often a run refreshes the fleet's trust bundle.
const bundleEvery = time.Second

// followBundle refreshes the fleet's bundle (the TLS trust of every
// agent's client and what the sender verifies SVIDs against) from the
// server every bundleEvery until ctx ends, as tier0 agents do at every
// sync: a root rotation during a run (a prepared root, then SVIDs and
// serving certificates under it) is then neither a TLS failure nor an
// unverifiable SVID. A failed refresh keeps the bundle it has.
func (f *Fleet) followBundle(ctx context.Context) {
	var c *client.Client
	for _, a := range f.Agents {
		if a != nil && a.Client != nil {
			c = a.Client
			break
		}
	}
	if c == nil {
		return
	}
	t := time.NewTicker(bundleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, bundleEvery)
		resp, err := c.Agent().GetBundle(cctx, &tier0v1.GetBundleRequest{})
		cancel()
		if err != nil {
			continue
		}
		if b, err := client.BundleFromResponse(f.TrustDomain, resp); err == nil && !b.Equal(f.Bundle) {
			f.Bundle.SetX509Authorities(b.X509Authorities())
		}
	}
}
