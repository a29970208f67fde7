package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/internal/serverinfo"
	"github.com/tier0-ca/tier0/internal/testenv"
	"github.com/tier0-ca/tier0/storage"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// testConfig is a single node on loopback ports with a soft key and a
// SQLite store in a fresh data dir.
func testConfig(t *testing.T) Config {
	t.Helper()
	cfg := Defaults()
	cfg.TrustDomain, cfg.DataDir = td, filepath.Join(t.TempDir(), "data")
	cfg.Listen, cfg.HTTPListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(&testenv.Buffer{}, nil))
	return cfg
}

// node is a Server running in a goroutine.
type node struct {
	t      *testing.T
	s      *Server
	cancel context.CancelFunc
	done   chan error
	logs   *testenv.Buffer
	addrs  chan [2]string // API and HTTP, once bound
}

func start(t *testing.T, cfg Config, mod func(*Server)) *node {
	t.Helper()
	n := &node{t: t, logs: &testenv.Buffer{}, done: make(chan error, 1), addrs: make(chan [2]string, 1)}
	cfg.Logger = slog.New(slog.NewTextHandler(n.logs, nil))
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.s = s
	s.hooks.listening = func(api, http string) { n.addrs <- [2]string{api, http} }
	if mod != nil {
		mod(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-n.done:
		case <-time.After(60 * time.Second):
			t.Error("Run did not return within 60s of cancel")
		}
		if t.Failed() {
			t.Logf("node log:\n%s", n.logs)
		}
	})
	return n
}

// info waits for DATA/server.json of this process.
func (n *node) info() serverinfo.Info {
	n.t.Helper()
	var info serverinfo.Info
	poll(n.t, "server.json", func() bool {
		var err error
		info, err = serverinfo.Read(n.s.cfg.DataDir)
		return err == nil && info.PID == os.Getpid() && info.HTTP != ""
	})
	return info
}

// httpAddr waits until the HTTP listener is bound.
func (n *node) httpAddr() string {
	n.t.Helper()
	select {
	case a := <-n.addrs:
		n.addrs <- a
		return a[1]
	case err := <-n.done:
		n.done <- err
		n.t.Fatalf("Run returned before listening: %v", err)
	case <-time.After(60 * time.Second):
		n.t.Fatal("not listening after 60s")
	}
	return ""
}

// readyz returns /readyz's status and body (0 when it does not answer).
func (n *node) readyz() (int, string) {
	resp, err := http.Get("http://" + n.httpAddr() + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (n *node) waitReady() {
	n.t.Helper()
	poll(n.t, "/readyz 200", func() bool {
		select {
		case err := <-n.done:
			n.t.Fatalf("Run returned while starting: %v\n%s", err, n.logs)
		default:
		}
		code, _ := n.readyz()
		return code == http.StatusOK
	})
}

// stop cancels Run and returns its result.
func (n *node) stop() error {
	n.t.Helper()
	n.cancel()
	select {
	case err := <-n.done:
		n.done <- err // for Cleanup
		return err
	case <-time.After(60 * time.Second):
		n.t.Fatal("Run did not return within 60s")
		return nil
	}
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// recordingStore is the real record store; it slows writes down (to widen
// any window in which shutdown could race them) and fails the test on any
// call after Close.
type recordingStore struct {
	storage.AuditStore
	t      *testing.T
	mu     sync.Mutex
	closed bool
	writes int
}

func (s *recordingStore) use(op string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.t.Errorf("%s on the record store after Close", op)
	}
	s.writes++
}

func (s *recordingStore) Append(ctx context.Context, recs []*record.Record) error {
	s.use("Append")
	time.Sleep(20 * time.Millisecond)
	return s.AuditStore.Append(ctx, recs)
}

func (s *recordingStore) AppendCheckpoints(ctx context.Context, cps []storage.Checkpoint) error {
	s.use("AppendCheckpoints")
	return s.AuditStore.AppendCheckpoints(ctx, cps)
}

func (s *recordingStore) AppendDecisions(ctx context.Context, ds []storage.Decision) error {
	s.use("AppendDecisions")
	time.Sleep(20 * time.Millisecond)
	return s.AuditStore.AppendDecisions(ctx, ds)
}

func (s *recordingStore) LastSeq(ctx context.Context) (uint64, error) {
	s.use("LastSeq")
	return s.AuditStore.LastSeq(ctx)
}

func (s *recordingStore) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return s.AuditStore.Close()
}

// agent enrolls agent "web" (granted spiffe://example.org/web) with the
// admin credential the node wrote and returns its client.
func (n *node) agent(ctx context.Context) *client.Client {
	n.t.Helper()
	dir, info := n.s.cfg.DataDir, n.info()
	bundle, err := client.LoadBundleFile(filepath.Join(dir, "bundle.pem"), td)
	if err != nil {
		n.t.Fatal(err)
	}
	svid, err := client.LoadSVIDFiles(filepath.Join(dir, "admin", "svid.pem"), filepath.Join(dir, "admin", "key.pem"))
	if err != nil {
		n.t.Fatal(err)
	}
	admin, err := client.New(ctx, client.Config{Addrs: info.Servers, TrustDomain: td, Bundle: bundle, SVID: client.NewRotatingSVID(svid)})
	if err != nil {
		n.t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Admin().CreateEntry(ctx, &tier0v1.CreateEntryRequest{Agent: "web", SpiffeId: "spiffe://example.org/web"}); err != nil {
		n.t.Fatal(err)
	}
	tok, err := admin.Admin().CreateJoinToken(ctx, &tier0v1.CreateJoinTokenRequest{Agent: "web"})
	if err != nil {
		n.t.Fatal(err)
	}
	asvid, err := client.Bootstrap(ctx, info.Servers, td, bundle, tok.GetToken())
	if err != nil {
		n.t.Fatal(err)
	}
	c, err := client.New(ctx, client.Config{Addrs: info.Servers, TrustDomain: td, Bundle: bundle, SVID: client.NewRotatingSVID(asvid)})
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { c.Close() })
	return c
}

func mint(ctx context.Context, t *testing.T, c *client.Client, id string) *tier0v1.MintResult {
	t.Helper()
	csr, _, err := client.NewCSR(spiffeid.RequireFromString(id))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: csr}}})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetResults()[0]
}

// TestShutdownOrder: a node with decisions pending and the exporter busy
// is stopped. Nothing reaches the store after its Close (the recording
// store fails the test otherwise), and every decision made before the stop
// is in the store: the decision log's final write ran before the store
// closed.
func TestShutdownOrder(t *testing.T) {
	cfg := testConfig(t)
	rec := &recordingStore{t: t}
	n := start(t, cfg, func(s *Server) {
		s.hooks.wrapStore = func(st storage.AuditStore) storage.AuditStore { rec.AuditStore = st; return rec }
	})
	n.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := n.agent(ctx)
	const allowed, denied = 20, 10
	for range allowed {
		if r := mint(ctx, t, c, "spiffe://example.org/web"); r.GetError() != nil {
			t.Fatalf("mint: %v", r.GetError())
		}
	}
	for range denied {
		if r := mint(ctx, t, c, "spiffe://example.org/db"); r.GetError() == nil {
			t.Fatal("mint of an ID no entry grants succeeded")
		}
	}
	if err := n.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	rec.mu.Lock()
	closed, writes := rec.closed, rec.writes
	rec.mu.Unlock()
	if !closed || writes == 0 {
		t.Fatalf("store closed %v after %d writes", closed, writes)
	}
	s, err := storage.OpenAudit(ctx, n.s.cfg.Store)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ds, err := s.QueryDecisions(ctx, storage.DecisionFilter{Caller: "spiffe://example.org/tier0/agent/web", Limit: storage.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != allowed+denied {
		t.Fatalf("%d decisions in the store after shutdown, want %d", len(ds), allowed+denied)
	}
}

// TestFailingLoopStopsNode: a loop that fails stops the node, Run returns
// its error, and everything is released: the same data dir and ports serve
// a new node at once.
func TestFailingLoopStopsNode(t *testing.T) {
	cfg := testConfig(t)
	boom := errors.New("boom")
	fire := make(chan struct{})
	rec := &recordingStore{t: t}
	n := start(t, cfg, func(s *Server) {
		s.hooks.wrapStore = func(st storage.AuditStore) storage.AuditStore { rec.AuditStore = st; return rec }
		s.hooks.loop = func(ctx context.Context) error {
			select {
			case <-fire:
				return boom
			case <-ctx.Done():
				return nil
			}
		}
	})
	n.waitReady()
	info := n.info()
	close(fire)
	var err error
	select {
	case err = <-n.done:
		n.done <- err
	case <-time.After(60 * time.Second):
		t.Fatal("the node did not stop after a loop failed")
	}
	if !errors.Is(err, boom) || err.Error() != "server: test loop: boom" {
		t.Fatalf("Run = %v, want the loop's error", err)
	}
	if !rec.closed {
		t.Fatal("record store not closed")
	}
	if !strings.Contains(n.logs.String(), "stopping the node: a component failed") {
		t.Fatalf("no log line for the failure:\n%s", n.logs)
	}

	// Everything was released: same dir, same ports.
	cfg.Listen, cfg.HTTPListen = info.Servers[0], info.HTTP
	again := start(t, cfg, nil)
	again.waitReady()
	if got := again.info(); got.Servers[0] != info.Servers[0] {
		t.Fatalf("restarted on %v, want %v", got.Servers, info.Servers)
	}
}

// TestFailureWhileStarting: a loop failing before the node is ready stops
// the start with that error.
func TestFailureWhileStarting(t *testing.T) {
	boom := errors.New("boom")
	n := start(t, testConfig(t), func(s *Server) {
		s.hooks.loop = func(context.Context) error { return boom }
	})
	select {
	case err := <-n.done:
		n.done <- err
		if !errors.Is(err, boom) {
			t.Fatalf("Run = %v, want boom", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the node did not stop")
	}
}

// TestHTTPFirst: /readyz answers while the node starts (here: held while
// opening the record store), with the reason, then "ok: leader ID".
func TestHTTPFirst(t *testing.T) {
	hold := make(chan struct{})
	n := start(t, testConfig(t), func(s *Server) {
		s.hooks.wrapStore = func(st storage.AuditStore) storage.AuditStore { <-hold; return st }
	})
	var body string
	poll(t, "a 503 from /readyz while opening the store", func() bool {
		var code int
		code, body = n.readyz()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "record store")
	})
	if want := "not ready: startup: starting: record store and audit\n"; body != want {
		t.Fatalf("/readyz while starting: %q, want %q", body, want)
	}
	if _, err := serverinfo.Read(n.s.cfg.DataDir); err == nil {
		t.Fatal("server.json written before the node is ready")
	}
	resp, err := http.Get("http://" + n.httpAddr() + "/livez")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/livez while starting: %v %v", resp, err)
	}
	resp.Body.Close()
	if code, body := httpGet(t, n.httpAddr(), "/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "record store") {
		t.Fatalf("/healthz while starting: %d %q", code, body)
	}
	close(hold)
	n.waitReady()
	if code, body := n.readyz(); code != http.StatusOK || body != "ok: leader node1\n" {
		t.Fatalf("/readyz when ready: %d %q", code, body)
	}
	if code, body := httpGet(t, n.httpAddr(), "/healthz"); code != http.StatusOK || body != "ok: leader\n" {
		t.Fatalf("/healthz when ready: %d %q", code, body)
	}
	code, body := httpGet(t, n.httpAddr(), "/healthz?verbose")
	var v struct {
		Role         string   `json:"role"`
		Healthy      bool     `json:"healthy"`
		NotReady     []string `json:"not_ready"`
		Signer       string   `json:"signer"`
		AppliedIndex uint64   `json:"applied_index"`
		LastContact  int64    `json:"last_contact_ms"`
		DiskFree     uint64   `json:"disk_free_bytes"`
		APIAddress   string   `json:"api_address"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil || code != http.StatusOK {
		t.Fatalf("/healthz?verbose: %d %q: %v", code, body, err)
	}
	if v.Role != "leader" || !v.Healthy || len(v.NotReady) != 0 || v.Signer != "ok" || v.AppliedIndex == 0 || v.LastContact != 0 || v.DiskFree == 0 || v.APIAddress == "" {
		t.Fatalf("/healthz?verbose: %s", body)
	}
	if info := n.info(); info.HTTP != n.httpAddr() {
		t.Fatalf("server.json names %s, want %s", info.HTTP, n.httpAddr())
	}
	resp, err = http.Get("http://" + n.httpAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m, _ := io.ReadAll(resp.Body)
	for _, name := range []string{"tier0_raft_is_leader 1", "tier0_raft_has_leader 1", "tier0_journal_full 0", "tier0_audit_decisions_dropped_total 0"} {
		if !strings.Contains(string(m), name) {
			t.Errorf("/metrics lacks %q", name)
		}
	}
}

func TestReadinessReasons(t *testing.T) {
	s, err := New(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	h := s.healthMux(s.reg)
	get := func() (int, string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return w.Code, w.Body.String()
	}
	if code, body := get(); code != http.StatusServiceUnavailable || body != "not ready: raft: waiting for raft to start; startup: starting\n" {
		t.Fatalf("before Run: %d %q", code, body)
	}
	s.setPhase(phaseStopping)
	if _, body := get(); !strings.HasSuffix(body, "startup: shutting down\n") {
		t.Fatalf("stopping: %q", body)
	}
}

// TestPortClashLeavesNoDataDir: a port in use stops the start before the
// data dir (CA key, raft state) is created.
func TestPortClashLeavesNoDataDir(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"http", func(c *Config) { c.HTTPListen = busy.Addr().String() }, "listen http: "},
		// A joining node: the clash is found before it spends its token.
		{"raft", func(c *Config) {
			c.Cluster.RaftAddr, c.Cluster.Join, c.Cluster.JoinToken = busy.Addr().String(), []string{"127.0.0.1:1"}, "token"
		}, "listen raft: "},
	} {
		cfg := testConfig(t)
		tc.set(&cfg)
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Run(context.Background())
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Fatalf("%s: Run = %v", tc.name, err)
		}
		if _, err := os.Stat(cfg.DataDir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: data dir after a port clash: %v", tc.name, err)
		}
	}
}

// TestIgnoredFirstStartSettings: a later start names the first-start-only
// settings it ignores in one warning.
func TestIgnoredFirstStartSettings(t *testing.T) {
	cfg := testConfig(t)
	n := start(t, cfg, nil)
	n.waitReady()
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(n.logs.String(), "ignored") {
		t.Fatalf("first start reported ignored settings:\n%s", n.logs)
	}
	cfg.Keys.Signer = "soft:" + filepath.Join(t.TempDir(), "other.key")
	again := start(t, cfg, nil)
	again.waitReady()
	var lines []string
	for _, l := range strings.Split(again.logs.String(), "\n") {
		if strings.Contains(l, "ignored") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "--signer") {
		t.Fatalf("want one warning naming --signer, got %q", lines)
	}
}

func TestNewValidates(t *testing.T) {
	for _, c := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.TrustDomain = spiffeid.TrustDomain{} }, "--trust-domain: trust domain is required"},
		{func(c *Config) { c.AgentTTL = 2 * time.Hour }, "--agent-ttl 2h0m0s outside bounds [15m0s, 1h0m0s]"},
		{func(c *Config) { c.AgentTTL = 0 }, "--agent-ttl 0s outside bounds [15m0s, 1h0m0s]"},
		{func(c *Config) { c.Keys.Mode = "fast" }, `--signing-mode "fast": want direct or delegated`},
		{func(c *Config) { c.Audit.CheckpointEvery = 0 }, "--checkpoint-every and --checkpoint-interval must be positive"},
		{func(c *Config) { c.Audit.MaxUnexported = -1 }, "--max-unexported -1: must be 0 (no limit) or positive"},
		{func(c *Config) { c.NodeID = "a/b" }, "--node-id: "},
		{func(c *Config) { c.Pprof = "0.0.0.0:6060" }, "--pprof 0.0.0.0:6060: only a loopback address is allowed"},
		{func(c *Config) { c.DataDir = "" }, "--data-dir: data dir is required"},
	} {
		cfg := testConfig(t)
		c.mod(&cfg)
		if _, err := New(cfg); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("New: %v, want %q", err, c.want)
		}
	}
	cfg := testConfig(t)
	cfg.Listen, cfg.HTTPListen, cfg.Store = "", "", ""
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.Listen != "127.0.0.1:8443" || s.cfg.HTTPListen != "127.0.0.1:8080" || s.cfg.Store != "sqlite:"+filepath.Join(cfg.DataDir, "records.db") {
		t.Fatalf("defaults: %+v", s.cfg)
	}
}

// TestClusterModeStops: a bootstrapping cluster node (raft over mTLS, the
// peer service on the raft port) starts, serves and stops cleanly; the
// peer service stops with raft's transport.
func TestClusterModeStops(t *testing.T) {
	cfg := testConfig(t)
	cfg.Cluster.RaftAddr = testenv.FreeAddr(t)
	n := start(t, cfg, nil)
	n.waitReady()
	if _, err := os.Stat(filepath.Join(n.s.cfg.DataDir, "node", "svid.pem")); err != nil {
		t.Fatalf("cluster mode keeps the node SVID on disk: %v", err)
	}
	if err := n.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Restart on the same raft address: the transport was released.
	again := start(t, cfg, nil)
	again.waitReady()
}

// TestRefusedStoreNotServing: a record store claimed by another cluster is
// refused before the node can issue its own credentials: Run stays up
// (not an error), /readyz says why (record store, not serving), the
// metric is set, no API address is published and no credential is
// written; a cancel stops it cleanly.
func TestRefusedStoreNotServing(t *testing.T) {
	cfg := testConfig(t)
	cfg.Store = "sqlite:" + filepath.Join(t.TempDir(), "other.db")
	st, err := storage.Open(context.Background(), cfg.Store)
	if err != nil {
		t.Fatal(err)
	}
	other := record.Lineage{ClusterID: "other-ca", ID: "other-lineage", BaseHash: record.Genesis, CreatedAt: time.Now().UTC()}
	if _, err := st.ClaimLineage(context.Background(), other, "x", time.Now()); err != nil {
		t.Fatal(err)
	}
	st.Close()
	n := start(t, cfg, nil)
	var body string
	poll(t, "/readyz naming the refused store", func() bool {
		var code int
		code, body = n.readyz()
		// The refusal reaches /readyz a moment before the startup phase
		// says not serving: wait for both.
		return code == http.StatusServiceUnavailable && strings.Contains(body, "record store: ha: export: REFUSED") &&
			strings.Contains(body, "startup: "+phaseNotServing)
	})
	for _, want := range []string{"other-lineage", "other-ca"} {
		if !strings.Contains(body, want) {
			t.Errorf("/readyz %q lacks %q", body, want)
		}
	}
	if info := n.info(); len(info.Servers) != 0 {
		t.Errorf("server.json publishes %v", info.Servers)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "admin")); err == nil {
		t.Error("an admin credential was written")
	}
	if !strings.Contains(metricsText(t, n), "tier0_export_refused 1") {
		t.Error("tier0_export_refused is not 1")
	}
	if err := n.stop(); err != nil {
		t.Fatalf("Run = %v after cancel, want nil", err)
	}
}

func metricsText(t *testing.T, n *node) string {
	t.Helper()
	resp, err := http.Get("http://" + n.httpAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// httpGet returns the code and body of GET http://addr+path.
func httpGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
