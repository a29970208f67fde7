package k8sattest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// kubelet is a test kubelet: GET /pods on HTTPS serves the recorded pod
// list in testdata/pods.json to a caller with the right bearer token.
type kubelet struct {
	srv   *httptest.Server
	mu    sync.Mutex
	token string
	hide  string // a pod UID left out of the list
	calls int
}

// newKubelet starts a test kubelet with a fresh self-signed serving
// certificate for 127.0.0.1 (as a kubelet without serverTLSBootstrap has).
func newKubelet(t *testing.T) *kubelet {
	t.Helper()
	recorded, err := os.ReadFile("testdata/pods.json")
	if err != nil {
		t.Fatal(err)
	}
	k := &kubelet{token: "sa-token-1"}
	k.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.mu.Lock()
		defer k.mu.Unlock()
		k.calls++
		if r.URL.Path != "/pods" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+k.token {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		var list map[string]any
		if err := json.Unmarshal(recorded, &list); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		items := list["items"].([]any)
		list["items"] = slices.DeleteFunc(items, func(p any) bool {
			return p.(map[string]any)["metadata"].(map[string]any)["uid"] == k.hide
		})
		_ = json.NewEncoder(w).Encode(list)
	}))
	k.srv.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, MinVersion: tls.VersionTLS12}
	k.srv.StartTLS()
	t.Cleanup(k.srv.Close)
	return k
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "worker-1@1759306364"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"worker-1"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (k *kubelet) set(f func(k *kubelet)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	f(k)
}

func (k *kubelet) fetches() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls
}

// env is a proc root with one process per cgroup test vector (PID =
// index+100) and the service-account files.
type env struct {
	dir, caFile, tokenFile, procRoot string
}

func newEnv(t *testing.T, k *kubelet, pids map[int32]string) env {
	t.Helper()
	e := env{dir: t.TempDir()}
	e.caFile = filepath.Join(e.dir, "ca.crt")
	e.tokenFile = filepath.Join(e.dir, "token")
	e.procRoot = filepath.Join(e.dir, "proc")
	if err := os.WriteFile(e.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.tokenFile, []byte(k.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for pid, vector := range pids {
		b, err := os.ReadFile(filepath.Join("testdata/cgroup", vector))
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(e.procRoot, itoa(pid))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func itoa(pid int32) string { return strconv.Itoa(int(pid)) }

func (e env) attestor(t *testing.T, k *kubelet, mod func(*Config)) *Attestor {
	t.Helper()
	cfg := Config{
		KubeletURL: k.srv.URL, CAFile: e.caFile, TokenFile: e.tokenFile, ProcRoot: e.procRoot,
		RetryFor: 2 * time.Second, RetryEvery: 20 * time.Millisecond, CacheTTL: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestAttest selects by namespace, service account, label, owner and
// container from the recorded pod list, for processes in different
// containers of the same pod and in another pod, under both cgroup
// versions; a host process gets no selectors.
func TestAttest(t *testing.T) {
	k := newKubelet(t)
	e := newEnv(t, k, map[int32]string{101: "v2-systemd-containerd", 102: "v2-relative-cgroupns", 103: "v2-systemd-guaranteed", 104: "v1-cgroupfs-docker", 105: "host-service"})
	a := e.attestor(t, k, nil)

	web, err := a.Attest(ctx(t), 101)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"k8s:container-image:registry.example.com/web:1.4.2",
		"k8s:container-name:web",
		"k8s:node-name:worker-1",
		"k8s:ns:prod",
		"k8s:pod-image:docker.io/envoyproxy/envoy:v1.36.0",
		"k8s:pod-image:envoyproxy/envoy:v1.36.0",
		"k8s:pod-image:registry.example.com/web:1.4.2",
		"k8s:pod-init-image:registry.example.com/web-migrate:1.4.2",
		"k8s:pod-label:app:web",
		"k8s:pod-label:pod-template-hash:7d9f8b6c5d",
		"k8s:pod-label:tier:frontend",
		"k8s:pod-name:web-7d9f8b6c5d-x2k4q",
		"k8s:pod-owner-uid:ReplicaSet:9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
		"k8s:pod-owner:ReplicaSet:web-7d9f8b6c5d",
		"k8s:pod-uid:" + webUID,
		"k8s:sa:web",
	}
	if !slices.Equal(web, want) {
		t.Fatalf("web selectors\n got %q\nwant %q", web, want)
	}
	envoy, err := a.Attest(ctx(t), 102)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(envoy, "k8s:container-name:envoy") || slices.Contains(envoy, "k8s:container-name:web") ||
		!slices.Contains(envoy, "k8s:container-image:docker.io/envoyproxy/envoy:v1.36.0") || !slices.Contains(envoy, "k8s:sa:web") {
		t.Fatalf("envoy sidecar selectors %q", envoy)
	}
	db, err := a.Attest(ctx(t), 103)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(db, "k8s:sa:db") || !slices.Contains(db, "k8s:pod-owner:StatefulSet:db") ||
		!slices.Contains(db, "k8s:pod-label:statefulset.kubernetes.io/pod-name:db-0") || slices.Contains(db, "k8s:sa:web") {
		t.Fatalf("db selectors %q", db)
	}
	if v1, err := a.Attest(ctx(t), 104); err != nil || !slices.Equal(v1, web) {
		t.Fatalf("cgroup v1 process: %q, %v", v1, err)
	}
	if host, err := a.Attest(ctx(t), 105); err != nil || host != nil {
		t.Fatalf("host process: %q, %v", host, err)
	}
	if n := k.fetches(); n != 1 {
		t.Fatalf("%d pod list fetches for 5 attestations within the cache lifetime, want 1", n)
	}
	if _, err := a.Attest(ctx(t), 999); err == nil || !strings.Contains(err.Error(), "k8sattest: pid 999: open ") {
		t.Fatalf("gone pid: %v", err)
	}
}

// TestAttestWaitsForNewPod: a container that the kubelet does not list yet
// (just started) is found once it is listed; one never listed is
// ErrNotFound after RetryFor.
func TestAttestWaitsForNewPod(t *testing.T) {
	k := newKubelet(t)
	k.set(func(k *kubelet) { k.hide = dbUID })
	e := newEnv(t, k, map[int32]string{101: "v2-systemd-guaranteed"})
	a := e.attestor(t, k, func(c *Config) { c.RetryFor = time.Minute })
	done := make(chan error, 1)
	go func() {
		sels, err := a.Attest(ctx(t), 101)
		if err == nil && !slices.Contains(sels, "k8s:pod-name:db-0") {
			err = errors.New("wrong pod")
		}
		done <- err
	}()
	for deadline := time.Now().Add(20 * time.Second); k.fetches() < 3; {
		if time.Now().After(deadline) {
			t.Fatal("attestor did not poll the kubelet for the missing pod")
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
	k.set(func(k *kubelet) { k.hide = "" })
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	k.set(func(k *kubelet) { k.hide = dbUID })
	b := e.attestor(t, k, func(c *Config) { c.RetryFor = 100 * time.Millisecond })
	_, err := b.Attest(ctx(t), 101)
	if !errors.Is(err, ErrNotFound) || err.Error() != "k8sattest: pod not found: no pod "+dbUID+" with container "+dbCID+" on this node's kubelet" {
		t.Fatalf("never listed: %v", err)
	}
}

// TestAttestKubeletAuth: the token is re-read at each fetch (projected
// tokens rotate); a refused token, an unverifiable kubelet and a bad
// answer are clear errors.
func TestAttestKubeletAuth(t *testing.T) {
	k := newKubelet(t)
	e := newEnv(t, k, map[int32]string{101: "v2-systemd-containerd"})
	a := e.attestor(t, k, func(c *Config) { c.CacheTTL = time.Nanosecond })
	if _, err := a.Attest(ctx(t), 101); err != nil {
		t.Fatal(err)
	}
	k.set(func(k *kubelet) { k.token = "sa-token-2" })
	if _, err := a.Attest(ctx(t), 101); err == nil || err.Error() != `k8sattest: kubelet GET /pods: 401 Unauthorized: "Unauthorized"` {
		t.Fatalf("stale token: %v", err)
	}
	if err := os.WriteFile(e.tokenFile, []byte("sa-token-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Attest(ctx(t), 101); err != nil {
		t.Fatalf("rotated token: %v", err)
	}

	other := newKubelet(t) // another certificate: not the configured CA
	b := e.attestor(t, other, nil)
	if _, err := b.Attest(ctx(t), 101); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("unverified kubelet: %v", err)
	}
	other.set(func(k *kubelet) { k.token = "sa-token-2" })
	c := e.attestor(t, other, func(c *Config) { c.SkipVerify = true })
	if _, err := c.Attest(ctx(t), 101); err != nil {
		t.Fatalf("skip verify: %v", err)
	}

	notKubelet := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `{"kind":"Status"}`) }))
	notKubelet.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, MinVersion: tls.VersionTLS12}
	notKubelet.StartTLS()
	t.Cleanup(notKubelet.Close)
	d := e.attestor(t, &kubelet{srv: notKubelet}, func(c *Config) { c.SkipVerify = true })
	if _, err := d.Attest(ctx(t), 101); err == nil || err.Error() != `k8sattest: kubelet pod list: kind "Status", want PodList` {
		t.Fatalf("not a pod list: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "k8sattest: config: the node name (or the kubelet URL) is required"},
		{Config{KubeletURL: "http://127.0.0.1:10255"}, `k8sattest: config: kubelet URL "http://127.0.0.1:10255": want https://HOST:PORT`},
		{Config{NodeName: "worker-1", CAFile: "/nonexistent/ca.crt"}, "k8sattest: kubelet CA: open /nonexistent/ca.crt: no such file or directory"},
	} {
		if _, err := New(tc.cfg); err == nil || err.Error() != tc.want {
			t.Errorf("New(%+v) = %v, want %s", tc.cfg, err, tc.want)
		}
	}
}
