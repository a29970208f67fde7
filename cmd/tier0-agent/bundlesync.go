package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"

	"github.com/tier0-ca/tier0/api/client"
	"github.com/tier0-ca/tier0/internal/atomicfile"
)

// trustBundleFile, in DIR/agent, is the trust domain's SPIFFE bundle (a
// JWKS with the X.509 roots and the JWT keys), for relying parties that
// validate JWT-SVIDs from files.
const trustBundleFile = "bundle.spiffe.json"

// Trust bundle sync (`fetch` and `run` alike). Every sync fetches the
// trust bundle over the agent's authenticated connection: every root the
// cluster publishes (a prepared root is published before it signs
// anything, a retired one until nothing it signed is still valid) and the
// JWT keys. When the roots changed, DIR/agent/bundle.pem is replaced
// atomically (never through a symbolic link), and so is
// DIR/agent/bundle.spiffe.json (roots and JWT keys) when anything changed;
// the in-memory bundle is
// updated in place; that bundle is also the agent's TLS trust for the
// cluster (client.Config.Bundle is read at every handshake), so once a
// prepared root is activated and the nodes present SVIDs under it, the
// agent still verifies them. An agent that has synced at least once while
// the new root was prepared follows a root rotation without any step on
// its host; `tier0 ca activate` waits long enough for that
// (docs/OPERATIONS.md "Root rotation").

// syncBundle refreshes the trust bundle with c and logs a change. A
// failure is returned: the caller decides whether the sync goes on with
// the bundle it has.
func (e *env) syncBundle(ctx context.Context, c *client.Client, a *agent) (bool, error) {
	changed, err := e.refreshBundle(ctx, c, a)
	if err != nil {
		return false, err
	}
	if changed {
		if err := writeTrustBundle(a); err != nil {
			return true, err
		}
		e.logger().InfoContext(ctx, "trust bundle updated", "roots", len(a.bundle.X509Authorities()), "jwt_keys", len(a.jwt.JWTAuthorities()))
	}
	return changed, nil
}

// writeTrustBundle atomically replaces DIR/agent/bundle.spiffe.json.
func writeTrustBundle(a *agent) error {
	b := spiffebundle.New(a.td)
	b.SetX509Authorities(a.bundle.X509Authorities())
	b.SetJWTAuthorities(a.jwt.JWTAuthorities())
	data, err := b.Marshal()
	if err != nil {
		return fmt.Errorf("marshal trust bundle: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(a.dir, trustBundleFile), data, 0o644); err != nil {
		return fmt.Errorf("write trust bundle: %w", err)
	}
	return nil
}
