package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/signer/soft"
)

// TestClusterColdStart is the Kubernetes cold start (podManagementPolicy:
// Parallel) with separate processes: three members start at once with
// empty data dirs and only their config files (the CA key pre-provisioned,
// as an HSM/KMS key is); the joining members wait, serving /livez and a
// not-ready /readyz naming what they wait for, until the operator writes
// the bundle and their join tokens (as the join Secret appears); all three
// become ready without restarting. Then all three are killed and started
// again one at a time, last first: the first ones wait (not ready, no
// exit) until a majority is up, and all three become ready and issue.
func TestClusterColdStart(t *testing.T) {
	root := t.TempDir()
	key := filepath.Join(root, "hsm", "root.key")
	if err := os.MkdirAll(filepath.Dir(key), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := soft.Generate(key); err != nil {
		t.Fatal(err)
	}
	joinDir := filepath.Join(root, "join")
	if err := os.MkdirAll(joinDir, 0o700); err != nil {
		t.Fatal(err)
	}
	const n = 3
	apis, https, rafts := make([]string, n), make([]string, n), make([]string, n)
	for i := range n {
		apis[i], https[i], rafts[i] = freeAddr(t), freeAddr(t), freeAddr(t)
	}
	c := &testCluster{t: t, apis: apis, store: filepath.Join(root, "records.db")}
	for i := range n {
		dir := filepath.Join(root, nodeName(i))
		cfg := fmt.Sprintf("data-dir: %s\ntrust-domain: example.org\nnode-id: %s\nlisten: %s\nhttp: %s\nraft-addr: %s\nsigner: soft:%s\nstore: sqlite:%s\n",
			dir, nodeName(i), apis[i], https[i], rafts[i], key, c.store)
		if i > 0 {
			cfg += "join:\n"
			for j := range n {
				if j != i {
					cfg += "  - " + apis[j] + "\n"
				}
			}
			cfg += fmt.Sprintf("join-token-file: %s\nbundle: %s\n", filepath.Join(joinDir, nodeName(i)), filepath.Join(joinDir, "bundle.pem"))
		}
		file := filepath.Join(root, nodeName(i)+".yaml")
		if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		p := &proc{t: t, dataDir: dir, args: []string{"--config", file}, raw: true}
		c.nodes = append(c.nodes, p)
		t.Cleanup(func() {
			if p.cmd != nil {
				_ = p.cmd.Process.Kill()
				<-p.exited
			}
			if t.Failed() && p.log != nil {
				t.Logf("server log (%s):\n%s", p.dataDir, p.log.String())
			}
		})
	}

	// First install: all at once.
	for _, p := range c.nodes {
		p.launch()
	}
	for i := range n {
		waitHealth(t, c.nodes[i], https[i], "/livez", http.StatusOK, "ok")
	}
	waitHealth(t, c.nodes[1], https[1], "/readyz", http.StatusServiceUnavailable, "waiting for the cluster's trust bundle")
	c.nodes[0].waitReady(c.nodes[0].exited)
	bundle := must(os.ReadFile(filepath.Join(c.nodes[0].dataDir, "bundle.pem")))
	writeFileAtomic(t, filepath.Join(joinDir, "bundle.pem"), bundle)
	waitHealth(t, c.nodes[2], https[2], "/readyz", http.StatusServiceUnavailable, "waiting for the node join token in "+filepath.Join(joinDir, nodeName(2)))
	for i := 1; i < n; i++ {
		token := strings.TrimSpace(must(c.nodes[0].cli("token", "create", "--node", nodeName(i))))
		writeFileAtomic(t, filepath.Join(joinDir, nodeName(i)), []byte(token+"\n"))
	}
	for _, p := range c.nodes[1:] {
		p.waitReady(p.exited) // the same process: it did not exit
	}
	if got := strings.Count(must(c.nodes[0].cli("cluster", "status")), "Voter"); got != n {
		t.Fatalf("%d voters after the cold start, want %d", got, n)
	}

	// Full stop, then start again one at a time in reverse order: the
	// first one up waits for the others, alive and not ready.
	for _, p := range c.nodes {
		p.kill()
	}
	for i := n - 1; i >= 0; i-- {
		c.nodes[i].launch()
		waitHealth(t, c.nodes[i], https[i], "/livez", http.StatusOK, "ok")
		if i == n-1 {
			waitHealth(t, c.nodes[i], https[i], "/readyz", http.StatusServiceUnavailable, "raft: waiting for")
		}
	}
	for _, p := range c.nodes {
		p.waitReady(p.exited)
	}
	ag := c.agent("a1", clusterID, apis[n-1])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := ag.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: csrFor(t, p256(t), []string{clusterID}, nil, nil)}}})
	if err != nil || resp.GetResults()[0].GetError() != nil {
		t.Fatalf("mint after the cold restart: %v %v", err, resp)
	}
}

// waitHealth polls p's health endpoint path until it answers code with a
// body containing want; it fails if p exits.
func waitHealth(t *testing.T, p *proc, addr, path string, code int, want string) {
	t.Helper()
	cl := http.Client{Timeout: time.Second}
	var last string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if p.exitedNow() {
			t.Fatalf("%s exited while waiting for %s %d %q:\n%s", p.dataDir, path, code, want, p.log.String())
		}
		if resp, err := cl.Get("http://" + addr + path); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
			if resp.StatusCode == code && strings.Contains(string(b), want) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
	t.Fatalf("%s: %s never answered %d %q; last: %s", p.dataDir, path, code, want, last)
}

// writeFileAtomic writes path through a rename: a reader never sees it
// half-written (as a Kubernetes Secret volume update).
func writeFileAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
