package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/atomicfile"
	"github.com/tier0-ca/tier0/internal/roles"
)

// agentConfig is DIR/agent/config.json, written by bootstrap.
type agentConfig struct {
	Servers     []string `json:"servers"`
	TrustDomain string   `json:"trust_domain"`
}

// agent is the agent's identity as loaded from DIR/agent.
type agent struct {
	dir    string // DIR/agent
	cfg    agentConfig
	td     spiffeid.TrustDomain
	bundle *x509bundle.Bundle // updated in place on refresh (thread-safe)
	svid   *client.RotatingSVID
	fed    federation        // roots of federated trust domains
	jwt    *jwtbundle.Bundle // JWT-SVID keys of td, from GetBundle
	taint  taints            // tainted keys, from GetBundle (taint.go)
}

func agentDir(dataDir string) string { return filepath.Join(dataDir, "agent") }

func writeConfig(dir string, cfg agentConfig) error {
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, "config.json"), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// loadAgent reads DIR/agent; --server flags replace the configured
// servers, in the config too.
func (e *env) loadAgent() (*agent, error) {
	dir := agentDir(e.dataDir)
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no agent identity in %s: run `tier0-agent bootstrap` first", e.dataDir)
	}
	if err != nil {
		return nil, err
	}
	var cfg agentConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "config.json"), err)
	}
	if len(e.servers) > 0 && !slices.Equal(e.servers, cfg.Servers) {
		// A new --server is remembered: later commands use it without the flag.
		cfg.Servers = e.servers
		if err := writeConfig(dir, cfg); err != nil {
			return nil, err
		}
		e.logger().Info("servers updated in the agent config", "servers", strings.Join(cfg.Servers, ","), "config", filepath.Join(dir, "config.json"))
	}
	td, err := spiffeid.TrustDomainFromString(cfg.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("%s: trust_domain: %w", filepath.Join(dir, "config.json"), err)
	}
	bundle, err := client.LoadBundleFile(filepath.Join(dir, client.BundleFile), td)
	if err != nil {
		return nil, err
	}
	svid, err := client.LoadSVIDFiles(filepath.Join(dir, client.SVIDFile), filepath.Join(dir, client.KeyFile))
	if err != nil {
		return nil, err
	}
	if _, ok := roles.AgentName(td, svid.ID); !ok {
		return nil, fmt.Errorf("%s holds %s, not an agent id of %s", dir, svid.ID, td)
	}
	return &agent{dir: dir, cfg: cfg, td: td, bundle: bundle, svid: client.NewRotatingSVID(svid), jwt: jwtbundle.New(td)}, nil
}

func (a *agent) current() *x509svid.SVID {
	s, _ := a.svid.GetX509SVID()
	return s
}

// checkExpiry fails with advice when the agent SVID can no longer be used.
func (a *agent) checkExpiry(now time.Time) error {
	leaf := a.current().Certificates[0]
	if !now.Before(leaf.NotAfter) {
		return fmt.Errorf("agent SVID %s expired at %s: run `tier0-agent bootstrap` again with a new join token",
			a.current().ID, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// halfLife is the midpoint of the agent SVID's validity.
func (a *agent) halfLife() time.Time {
	leaf := a.current().Certificates[0]
	return leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
}

func (e *env) dial(ctx context.Context, a *agent) (*client.Client, error) {
	return client.New(ctx, client.Config{
		Addrs: a.cfg.Servers, TrustDomain: a.td, Bundle: a.bundle, SVID: a.svid, Logger: e.logger(),
	})
}

// renew replaces the agent SVID with a new key and certificate and saves it.
// It dials a fresh Client so the handshake uses the current SVID.
func (e *env) renew(ctx context.Context, a *agent) (*x509svid.SVID, error) {
	if err := a.checkExpiry(e.now()); err != nil {
		return nil, err
	}
	c, err := e.dial(ctx, a)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	csr, key, err := client.NewCSR(spiffeid.ID{})
	if err != nil {
		return nil, err
	}
	resp, err := c.Agent().RenewAgent(ctx, &tier0v1.RenewAgentRequest{Csr: csr})
	if err != nil {
		return nil, fmt.Errorf("renew agent svid: %w", err)
	}
	svid, err := client.ParseChain(resp.GetChain(), key, a.bundle)
	if err != nil {
		return nil, fmt.Errorf("renew agent svid: %w", err)
	}
	if svid.ID != a.current().ID {
		return nil, fmt.Errorf("renew agent svid: server issued %s, want %s", svid.ID, a.current().ID)
	}
	if err := client.WriteSVIDFiles(a.dir, svid, a.bundle); err != nil {
		return nil, err
	}
	a.svid.Set(svid)
	return svid, nil
}

// refreshBundle fetches the bundle; when its roots changed it updates the
// in-memory bundle and DIR/agent/bundle.pem. It reports whether they changed.
func (e *env) refreshBundle(ctx context.Context, c *client.Client, a *agent) (bool, error) {
	resp, err := c.Agent().GetBundle(ctx, &tier0v1.GetBundleRequest{})
	if err != nil {
		return false, fmt.Errorf("get bundle: %w", err)
	}
	b, err := client.BundleFromResponse(a.td, resp)
	if err != nil {
		return false, err
	}
	changed, err := a.setTrust(resp)
	if err != nil {
		return false, err
	}
	if a.setTaints(resp) {
		changed = true
	}
	if b.Equal(a.bundle) {
		return changed, nil
	}
	if err := client.WriteBundleFile(filepath.Join(a.dir, client.BundleFile), b); err != nil {
		return false, err
	}
	a.bundle.SetX509Authorities(b.X509Authorities())
	return true, nil
}
