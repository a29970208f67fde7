package main

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/tier0-ca/tier0/api/client"
	"github.com/tier0-ca/tier0/signer/soft"
)

// servingRoot is the root ID of the SVID a node serves its API with.
func servingRoot(t *testing.T, addr string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // inspects the served chain only
	if err != nil {
		return ""
	}
	defer conn.Close()
	return rootIDOf(conn.ConnectionState().PeerCertificates)
}

// jwtKID is the kid in a JWT's header.
func jwtKID(t *testing.T, token string) string {
	t.Helper()
	h, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		KID string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v.KID
}

// caList is `tier0 ca list -o json`.
type caList struct {
	Roots []struct {
		ID    string `json:"id"`
		State string `json:"state"`
		Nodes []struct {
			Node  string `json:"node"`
			State string `json:"state"`
		} `json:"nodes"`
	} `json:"roots"`
}

// rootStates maps root ID to "cluster-state node1=.. node2=..".
func rootStates(t *testing.T, p *proc) map[string]string {
	t.Helper()
	out, err := p.cli("ca", "list", "-o", "json")
	if err != nil {
		return nil
	}
	var l caList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("ca list -o json: %v\n%s", err, out)
	}
	m := map[string]string{}
	for _, r := range l.Roots {
		s := r.State
		for _, n := range r.Nodes {
			s += " " + n.Node + "=" + n.State
		}
		m[r.ID] = s
	}
	return m
}

// TestRootRotationUnderLoad: on a 3-node cluster under continuous
// issuance, a root rotation as docs/OPERATIONS.md describes it: prepare
// (refused without --signer; a key only node1 has is refused at activate,
// naming the other voters), publish window, activate, every node switches
// (its own serving SVID too), taint of the old root. Zero failed or
// unverifiable SVIDs; a `tier0-agent fetch` agent run periodically ends
// with a bundle that verifies new-root SVIDs and still talks to the
// cluster; a `tier0-agent run` agent re-issues its workload's SVID within
// a sync interval of the taint; a tainted JWT key is replaced and the
// agent stops serving tokens it signed.
func TestRootRotationUnderLoad(t *testing.T) {
	ctx := testCtx(t)
	c := startCluster(t, 3, "--ca-publish-window", "4s")
	n1 := c.nodes[0]
	oldRoot := servingRoot(t, n1.addr())

	// Load: an in-test agent minting continuously from every node, which
	// refreshes its bundle as agents do.
	bundle := n1.bundle()
	svid := c.agentSVID("load", webID, c.apis)
	cl, err := client.New(ctx, client.Config{Addrs: c.apis, TrustDomain: n1.td(), Bundle: bundle, SVID: client.NewRotatingSVID(svid), MaxAttempts: 9})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	is := startIssuing(t, cl, bundle, webID, 4)

	// A fetch-only agent, run periodically against every node.
	fetchID := "spiffe://example.org/fetched"
	token := strings.TrimSpace(must(n1.cli("token", "create", "--agent", "fetcher")))
	must(n1.cli("entry", "create", "--agent", "fetcher", "--spiffe-id", fetchID, "--ttl", "15m"))
	fetchDir, fetchOut := t.TempDir(), t.TempDir()
	must(runBin("tier0-agent", "bootstrap", "--server", strings.Join(c.apis, ","), "--bundle", filepath.Join(n1.dataDir, "bundle.pem"), "--token", token, "--data-dir", fetchDir))
	var fetches, fetchFailures atomic.Int64
	stopFetch := make(chan struct{})
	fetchDone := make(chan struct{})
	go func() {
		defer close(fetchDone)
		for {
			select {
			case <-stopFetch:
				return
			case <-time.After(300 * time.Millisecond): // the agent's schedule, not synchronisation
			}
			if _, err := runBin("tier0-agent", "fetch", "--data-dir", fetchDir, "--out", fetchOut); err != nil {
				fetchFailures.Add(1)
				t.Logf("fetch failed: %v", err)
			}
			fetches.Add(1)
		}
	}()

	// A `tier0-agent run` agent with a workload (X.509 and JWT).
	uid := fmt.Sprint(os.Getuid())
	workloadID := spiffeid.RequireFromString("spiffe://example.org/workload")
	must(n1.cli("entry", "create", "--agent", "runner", "--spiffe-id", workloadID.String(), "--selector", "unix:uid:"+uid, "--ttl", "15m"))
	runner := startAgent(t, n1, "runner", "--sync-interval", "1s")
	src := runner.x509Source(ctx, workloadID)
	jwtSrc, err := workloadapi.NewJWTSource(ctx, workloadapi.WithClientOptions(runner.addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer jwtSrc.Close()
	jwt1 := must(jwtSrc.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "db"}))

	// Prepare: a key made on one node is refused in a cluster, with why.
	if _, err := n1.cli("ca", "prepare"); err == nil || !strings.Contains(err.Error(), "DEV-ONLY soft key on this node only") || !strings.Contains(err.Error(), "3-node cluster") {
		t.Fatalf("ca prepare without --signer in a cluster: %v", err)
	}
	// A soft key file only node1 has (relative: each node's data dir).
	if err := soft.Generate(filepath.Join(n1.dataDir, "ca", "next.key")); err != nil {
		t.Fatal(err)
	}
	newRoot := strings.TrimSpace(must(n1.cli("ca", "prepare", "--signer", "soft:ca/next.key")))
	pollUntil(t, 20*time.Second, func() bool { return len(n1.bundle().X509Authorities()) == 2 })
	bundle.SetX509Authorities(n1.bundle().X509Authorities()) // the load agent's bundle refresh

	// The other voters report they cannot sign with it: activate refuses,
	// even forced, naming them; ca list says so per node.
	pollUntil(t, 30*time.Second, func() bool {
		_, err := n1.cli("ca", "activate", newRoot, "--force")
		return err != nil && strings.Contains(err.Error(), "FailedPrecondition") && !strings.Contains(err.Error(), "not tested yet") &&
			strings.Contains(err.Error(), "node2 (keys: open CA key") && strings.Contains(err.Error(), "node3 (keys: open CA key") && !strings.Contains(err.Error(), "node1 (")
	})
	pollUntil(t, 10*time.Second, func() bool {
		st := rootStates(t, n1)[newRoot]
		return strings.HasPrefix(st, "prepared node1=prepared node2=prepared (cannot sign: keys: open CA key") && strings.Contains(st, "node3=prepared (cannot sign")
	})
	key := must(os.ReadFile(filepath.Join(n1.dataDir, "ca", "next.key")))
	for _, p := range c.nodes[1:] {
		if err := os.WriteFile(filepath.Join(p.dataDir, "ca", "next.key"), key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Every voter re-tests within seconds and the window passes: activate.
	activatedAt := time.Now()
	pollUntil(t, 60*time.Second, func() bool { _, err := n1.cli("ca", "activate", newRoot); return err == nil })
	t.Logf("activated %v after the key reached every node", time.Since(activatedAt).Round(100*time.Millisecond))

	// Every node switches, its serving SVID too.
	want := map[string]string{
		newRoot: "active node1=active node2=active node3=active",
		oldRoot: "published-old node1=published-old node2=published-old node3=published-old",
	}
	var states map[string]string
	pollUntil(t, 60*time.Second, func() bool {
		states = rootStates(t, n1)
		return states[newRoot] == want[newRoot] && states[oldRoot] == want[oldRoot]
	})
	for _, p := range c.nodes {
		pollUntil(t, 30*time.Second, func() bool { return servingRoot(t, p.addr()) == newRoot })
	}

	// The workload's SVID (15m) still descends from the old root: taint
	// it, and the agent re-issues at its next sync (1s).
	if got := rootIDOf(must(src.GetX509SVID()).Certificates); got != oldRoot {
		t.Fatalf("workload SVID before the taint descends from %s, want the old root %s", got, oldRoot)
	}
	if _, err := n1.cli("ca", "taint", newRoot); err == nil || !strings.Contains(err.Error(), "only a replaced root can be tainted") {
		t.Fatalf("taint the active root: %v", err)
	}
	taintedAt := time.Now()
	must(n1.cli("ca", "taint", oldRoot))
	pollUntil(t, 30*time.Second, func() bool { return rootIDOf(must(src.GetX509SVID()).Certificates) == newRoot })
	t.Logf("workload SVID re-issued under the new root %v after the taint (agent sync interval 1s)", time.Since(taintedAt).Round(100*time.Millisecond))
	agentSVID := must(client.LoadSVIDFiles(filepath.Join(runner.dataDir, "agent", "svid.pem"), filepath.Join(runner.dataDir, "agent", "key.pem")))
	if got := rootIDOf(agentSVID.Certificates); got != newRoot {
		t.Fatalf("the run agent's own SVID descends from %s after the taint, want %s", got, newRoot)
	}
	if st := rootStates(t, n1)[oldRoot]; st != want[oldRoot] {
		t.Fatalf("old root after the taint: %q", st)
	}
	if list := must(n1.cli("ca", "list")); !strings.Contains(list, "published-old,tainted") {
		t.Fatalf("ca list does not show the taint:\n%s", list)
	}

	// JWT: taint the key that signed the workload's token; node1 replaces
	// it and the agent mints a new token instead of serving the cached one.
	kid := jwtKID(t, jwt1.Marshal())
	must(n1.cli("ca", "taint", "--jwt", kid))
	pollUntil(t, 30*time.Second, func() bool {
		s, err := jwtSrc.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "db"})
		return err == nil && jwtKID(t, s.Marshal()) != kid
	})

	// The fetch-only agent: it kept working throughout, its bundle has
	// both roots, and its SVIDs now descend from the new root.
	close(stopFetch)
	<-fetchDone
	must(runBin("tier0-agent", "fetch", "--data-dir", fetchDir, "--out", fetchOut))
	if got := rootIDOf(verifyAgainstAgentBundle(t, n1, fetchDir, fetchOut, fetchID).Certificates); got != newRoot {
		t.Fatalf("fetched SVID descends from %s, want %s", got, newRoot)
	}
	if got := agentBundleRoots(t, n1, fetchDir); !got[oldRoot] || !got[newRoot] {
		t.Fatalf("fetch agent bundle: %v", got)
	}
	if n := fetchFailures.Load(); n > 0 {
		t.Fatalf("%d of %d periodic fetches failed", n, fetches.Load())
	}

	is.stop()
	if n := is.failures.Load(); n > 0 || is.count.Load() == 0 {
		t.Fatalf("load: %d SVIDs, %d failures %v", is.count.Load(), n, is.codeSummary())
	}
	t.Logf("load: %d SVIDs during the rotation, 0 failed, all verified; %d periodic fetches, 0 failed", is.count.Load(), fetches.Load())
}
