package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// TestAgentEvictBanE2E: on a 3-node cluster of separate processes, an
// agent bootstrapped with `tier0-agent` is cut off by `tier0 agent evict`
// on every node (renewal, fetch, mint, JWT, bundle: PermissionDenied),
// attests again with a new token, a second token supersedes the first
// credential, `ban` refuses a token until `unban`, and the denials are in
// the decision log.
func TestAgentEvictBanE2E(t *testing.T) {
	c := startCluster(t, 3)
	p := c.nodes[c.leader()]
	td := p.td().Name()
	bundlePath := filepath.Join(p.dataDir, "bundle.pem")
	must(p.cli("entry", "create", "--agent", "web1", "--spiffe-id", "spiffe://"+td+"/web"))
	token := func() string { return strings.TrimSpace(must(p.cli("token", "create", "--agent", "web1"))) }
	servers := strings.Join(c.apis, ",")
	bootstrap := func(dir, tok string) (string, error) {
		return runBin("tier0-agent", "bootstrap", "--server", servers, "--bundle", bundlePath, "--token", tok, "--data-dir", dir)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.nodes {
				t.Logf("%s log:\n%s", n.dataDir, grepLog(n.log.String(), "attest", "credential", "internal", "evict", "ban"))
			}
		}
	})
	agentDir := t.TempDir()
	if out, err := bootstrap(agentDir, token()); err != nil {
		t.Fatalf("%s %v", out, err)
	}
	works := func(dir string) {
		t.Helper()
		for _, api := range c.apis {
			must(runBin("tier0-agent", "renew", "--data-dir", dir, "--server", api))
			must(runBin("tier0-agent", "fetch", "--data-dir", dir, "--out", t.TempDir(), "--server", api))
		}
	}
	works(agentDir)

	var agents []map[string]any
	must(0, json.Unmarshal([]byte(must(p.cli("agent", "list", "-o", "json"))), &agents))
	if len(agents) != 1 || agents[0]["state"] != "active" || agents[0]["generation"] != float64(1) || agents[0]["serial"] == "" ||
		agents[0]["spiffe_id"] != "spiffe://"+td+"/tier0/agent/web1" || agents[0]["renewed_node"] == "" || agents[0]["expires_at"] == "" {
		t.Fatalf("agent list: %v", agents)
	}
	if out := must(p.cli("agent", "show", "spiffe://"+td+"/tier0/agent/web1")); !strings.Contains(out, "active") {
		t.Fatalf("agent show by SPIFFE ID: %s", out)
	}

	// Evict: every node refuses the credential, for every agent call.
	must(p.cli("agent", "evict", "web1"))
	deniedEverywhere(t, c, agentDir, p.bundle())
	if out, err := runBin("tier0-agent", "fetch", "--data-dir", agentDir, "--out", t.TempDir(), "--server", p.addr()); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("fetch after evict: %s %v", out, err)
	}
	// The decision log is written in batches (every 200 ms): polled.
	pollUntil(t, 30*time.Second, func() bool {
		dec := must(p.cli("audit", "decisions", "--denied", "--caller", "spiffe://"+td+"/tier0/agent/web1", "-o", "json"))
		return strings.Contains(dec, "RenewAgent: ha: web1 was evicted") && strings.Contains(dec, "MintX509SVIDs: ha: web1 was evicted")
	})

	// Re-attest with a new token, through a follower (the attestation is
	// forwarded to the leader); then a second token supersedes it.
	follower := c.apis[(c.leader()+1)%len(c.apis)]
	must(runBin("tier0-agent", "bootstrap", "--server", follower, "--bundle", bundlePath, "--token", token(), "--data-dir", agentDir))
	must(runBin("tier0-agent", "bootstrap", "--server", servers, "--bundle", bundlePath, "--token", token(), "--data-dir", agentDir))
	works(agentDir)
	oldDir := t.TempDir()
	copyAgent(t, agentDir, oldDir)
	must(bootstrap(agentDir, token()))
	works(agentDir)
	deniedEverywhere(t, c, oldDir, p.bundle())

	// Ban refuses a new token (without burning it); unban allows it.
	must(p.cli("agent", "ban", "web1"))
	deniedEverywhere(t, c, agentDir, p.bundle())
	tok := token()
	if out, err := bootstrap(t.TempDir(), tok); err == nil || !strings.Contains(err.Error(), "banned") {
		t.Fatalf("bootstrap while banned: %s %v", out, err)
	}
	must(p.cli("agent", "unban", "web1"))
	deniedEverywhere(t, c, agentDir, p.bundle()) // unban does not revive the old credential
	must(bootstrap(agentDir, tok))
	works(agentDir)
	must(0, json.Unmarshal([]byte(must(p.cli("agent", "list", "-o", "json"))), &agents))
	if agents[0]["generation"] != float64(5) || agents[0]["state"] != "active" || !strings.Contains(agents[0]["state_by"].(string), "/tier0/admin") {
		t.Fatalf("after unban and attest: %v", agents)
	}
}

// deniedEverywhere checks that the agent credential in dir is refused by
// every node for every agent call (a follower may apply the eviction a
// moment after the leader answered: polled with a deadline).
func deniedEverywhere(t *testing.T, c *testCluster, dir string, bundle *x509bundle.Bundle) {
	t.Helper()
	svid, err := client.LoadSVIDFiles(filepath.Join(dir, "agent", client.SVIDFile), filepath.Join(dir, "agent", "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for i, api := range c.apis {
		cl := c.client(svid, []string{api})
		calls := map[string]func(ctx context.Context) error{
			"RenewAgent": func(ctx context.Context) error {
				_, err := cl.Agent().RenewAgent(ctx, &tier0v1.RenewAgentRequest{Csr: csrFor(t, p256(t), nil, nil, nil)})
				return err
			},
			"MintX509SVIDs": func(ctx context.Context) error {
				_, err := cl.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: csrFor(t, p256(t), []string{"spiffe://" + c.nodes[0].td().Name() + "/web"}, nil, nil)}}})
				return err
			},
			"MintJWTSVID": func(ctx context.Context) error {
				_, err := cl.Agent().MintJWTSVID(ctx, &tier0v1.MintJWTSVIDRequest{SpiffeId: "spiffe://" + c.nodes[0].td().Name() + "/web", Audience: []string{"x"}})
				return err
			},
			"GetBundle": func(ctx context.Context) error {
				_, err := cl.Agent().GetBundle(ctx, &tier0v1.GetBundleRequest{})
				return err
			},
		}
		for name, call := range calls {
			var last error
			pollUntil(t, 10*time.Second, func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				last = call(ctx)
				return status.Code(last) == codes.PermissionDenied
			})
			if status.Code(last) != codes.PermissionDenied {
				t.Fatalf("node %d %s: %v", i, name, last)
			}
		}
	}
}

func copyAgent(t *testing.T, from, to string) {
	t.Helper()
	src, dst := filepath.Join(from, "agent"), filepath.Join(to, "agent")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// grepLog keeps the lines of log that contain one of words.
func grepLog(log string, words ...string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
