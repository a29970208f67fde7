package main

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// recordedPods is the kubelet pod list the k8s attestor's unit tests use.
const recordedPods = "../tier0-agent/internal/k8sattest/testdata/pods.json"

// TestK8sWorkloadAttestation: a real server and a `tier0-agent run --k8s`
// process; the kubelet is a test HTTPS endpoint serving a recorded pod list
// (a real kubelet cannot run here) to the agent's bearer token, verified
// with its CA; this test process is the workload, placed in the web pod's
// container by a proc root whose /proc/PID/cgroup says so. It gets the
// SVIDs of the entries whose k8s selectors (namespace, service account,
// label) it matches, and no other.
func TestK8sWorkloadAttestation(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	caPEM, certPEM, keyPEM := webPKI(t)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pods := must(os.ReadFile(recordedPods))
	var fetches atomic.Int32
	kubelet := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/pods" || r.Header.Get("Authorization") != "Bearer agent-sa-token" {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		fetches.Add(1)
		_, _ = w.Write(pods)
	}))
	kubelet.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	kubelet.StartTLS()
	t.Cleanup(kubelet.Close)

	// The proc root: this process, in the web container of pod web-7d9f8b6c5d-x2k4q.
	procRoot := filepath.Join(dir, "proc")
	self := filepath.Join(procRoot, fmt.Sprint(os.Getpid()))
	if err := os.MkdirAll(self, 0o700); err != nil {
		t.Fatal(err)
	}
	cgroup := "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f0b9c0e_3a1d_4d8e_9b7a_2c5e1f4a8d31.slice/" +
		"cri-containerd-4b5e57f6eb2f42b9039b3d1e13929295f231749c510cbe341cd68036d9af97e2.scope\n"
	for name, data := range map[string][]byte{filepath.Join(self, "cgroup"): []byte(cgroup), filepath.Join(dir, "kubelet-ca.pem"): caPEM, filepath.Join(dir, "token"): []byte("agent-sa-token\n")} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	srv := startServer(t, t.TempDir())
	for _, e := range [][]string{
		{"--spiffe-id", "spiffe://example.org/ns/prod/sa/web", "--selector", "k8s:ns:prod", "--selector", "k8s:sa:web", "--selector", "k8s:pod-label:app:web"},
		{"--spiffe-id", "spiffe://example.org/envoy", "--selector", "k8s:ns:prod", "--selector", "k8s:container-name:envoy"},
		{"--spiffe-id", "spiffe://example.org/ns/prod/sa/db", "--selector", "k8s:ns:prod", "--selector", "k8s:sa:db"},
		{"--spiffe-id", "spiffe://example.org/api", "--selector", "k8s:pod-label:app:api"},
		{"--spiffe-id", "spiffe://example.org/web-any-container", "--selector", "k8s:pod-owner:ReplicaSet:web-7d9f8b6c5d"},
	} {
		must(srv.cli(append([]string{"entry", "create", "--agent", "node-worker-1", "--ttl", "15m"}, e...)...))
	}
	if _, err := srv.cli("entry", "create", "--agent", "node-worker-1", "--spiffe-id", "spiffe://example.org/x", "--selector", "k8s:namespace:prod"); err == nil ||
		!strings.Contains(err.Error(), "unknown k8s selector") {
		t.Fatalf("bad k8s selector accepted: %v", err)
	}
	agent := startAgent(t, srv, "node-worker-1", "--sync-interval", "200ms", "--k8s", "--k8s-node-name", "worker-1",
		"--k8s-kubelet-url", kubelet.URL, "--k8s-kubelet-ca", filepath.Join(dir, "kubelet-ca.pem"),
		"--k8s-token", filepath.Join(dir, "token"), "--proc-root", procRoot)

	var ids []string
	pollUntil(t, 30*time.Second, func() bool {
		svids, err := workloadapi.FetchX509SVIDs(ctx, agent.addr())
		ids = ids[:0]
		for _, s := range svids {
			ids = append(ids, s.ID.String())
		}
		return err == nil && len(ids) == 2
	})
	if want := []string{"spiffe://example.org/ns/prod/sa/web", "spiffe://example.org/web-any-container"}; !slices.Equal(ids, want) {
		t.Fatalf("workload got %v, want %v", ids, want)
	}
	if fetches.Load() == 0 {
		t.Fatal("the agent never asked the kubelet")
	}
	if !strings.Contains(agent.log.String(), "k8s:sa:web") {
		t.Fatalf("agent log lacks the attested selectors:\n%s", agent.log.String())
	}
}
