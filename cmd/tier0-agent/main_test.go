package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
	"github.com/tier0-ca/tier0/api/client/clienttest"
	"github.com/tier0-ca/tier0/internal/testenv"
)

type harness struct {
	t          *testing.T
	ca         *clienttest.CA
	fake       *clienttest.Server
	addr       string
	dataDir    string
	bundlePath string
	now        func() time.Time
}

func newHarness(t *testing.T, agentTTL time.Duration) *harness {
	t.Helper()
	ca := clienttest.NewCA(t, "example.org")
	fake := clienttest.NewServer(ca)
	fake.AgentTTL = agentTTL
	h := &harness{t: t, ca: ca, fake: fake, dataDir: t.TempDir(), now: time.Now}
	h.addr = fake.Start(t, "n1")
	h.bundlePath = filepath.Join(t.TempDir(), "bundle.pem")
	if err := client.WriteBundleFile(h.bundlePath, ca.Bundle); err != nil {
		t.Fatal(err)
	}
	return h
}

// exec runs the CLI as main would and returns stdout, stderr and the
// message main would print.
func (h *harness) exec(ctx context.Context, args ...string) (stdout, stderr string, errMsg string) {
	h.t.Helper()
	var out, errb testenv.Buffer
	e := &env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }, now: h.now}
	cmd := newRootCmd(e)
	cmd.SetArgs(append(args, "--data-dir", h.dataDir))
	if err := cmd.ExecuteContext(ctx); err != nil {
		errMsg = describe(err)
	}
	return out.String(), errb.String(), errMsg
}

func (h *harness) bootstrap(agent string) {
	h.t.Helper()
	h.fake.AddToken("tok-"+agent, agent)
	out, _, msg := h.exec(ctxT(h.t), "bootstrap", "--server", h.addr, "--bundle", h.bundlePath, "--token", "tok-"+agent)
	if msg != "" {
		h.t.Fatalf("bootstrap: %s", msg)
	}
	want := "spiffe://example.org/tier0/agent/" + agent + "\texpires "
	if !strings.HasPrefix(out, want) {
		h.t.Fatalf("bootstrap printed %q, want prefix %q", out, want)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestBootstrapWritesIdentity(t *testing.T) {
	h := newHarness(t, time.Hour)
	h.bootstrap("host-1")
	dir := filepath.Join(h.dataDir, "agent")
	svid, err := client.LoadSVIDFiles(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.String() != "spiffe://example.org/tier0/agent/host-1" {
		t.Fatalf("svid %s", svid.ID)
	}
	if fi, err := os.Stat(filepath.Join(dir, "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key.pem: %v %v", fi.Mode(), err)
	}
	if _, err := client.LoadBundleFile(filepath.Join(dir, "bundle.pem"), h.ca.TD); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg agentConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.TrustDomain != "example.org" || len(cfg.Servers) != 1 || cfg.Servers[0] != h.addr {
		t.Fatalf("config %+v", cfg)
	}
}

func TestBootstrapErrors(t *testing.T) {
	h := newHarness(t, time.Hour)
	other := filepath.Join(t.TempDir(), "other.pem")
	if err := client.WriteBundleFile(other, clienttest.NewCA(t, "example.org").Bundle); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "bad token", args: []string{"--bundle", h.bundlePath, "--token", "nope"},
			want: "bootstrap: client: attest join token: permission denied: join token is invalid, expired or already used"},
		{name: "no token", args: []string{"--bundle", h.bundlePath}, want: "--token is required (or set TIER0_JOIN_TOKEN)"},
		{name: "no bundle", args: []string{"--token", "x"}, want: "--bundle is required: the PEM root certificates of the tier0 CA"},
		{name: "bad trust domain", args: []string{"--bundle", h.bundlePath, "--token", "x", "--trust-domain", "Bad TD"},
			want: `--trust-domain: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores`},
		{name: "server from another CA", args: []string{"--bundle", other, "--token", "x"},
			want: "bootstrap: client: attest join token: unavailable: connection error: desc = \"transport: authentication handshake failed: x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, msg := h.exec(ctxT(t), append([]string{"bootstrap", "--server", h.addr}, tt.args...)...)
			if !strings.HasPrefix(msg, tt.want) {
				t.Fatalf("got %q, want prefix %q", msg, tt.want)
			}
		})
	}
}

func TestFetch(t *testing.T) {
	h := newHarness(t, time.Hour)
	h.bootstrap("host-1")
	h.fake.AddEntry("host-1", "spiffe://example.org/web", 20*time.Minute)
	h.fake.AddEntry("host-1", "spiffe://example.org/db/primary", 20*time.Minute)
	h.fake.AddEntry("host-1", "spiffe://example.org/denied", 20*time.Minute)
	h.fake.AddEntry("host-2", "spiffe://example.org/not-mine", 20*time.Minute)
	h.fake.Deny("spiffe://example.org/denied", codes.PermissionDenied, "entry disabled")
	out := t.TempDir()

	stdout, stderr, msg := h.exec(ctxT(t), "fetch", "--out", out)
	if msg != "1 of 3 SVIDs failed" {
		t.Fatalf("fetch error %q, want 1 of 3 failed", msg)
	}
	if want := "FAILED\tspiffe://example.org/denied\tpermission denied: entry disabled\n"; stderr != want {
		t.Fatalf("stderr %q, want %q", stderr, want)
	}
	for _, tc := range []struct{ id, dir string }{
		{"spiffe://example.org/web", "web"},
		{"spiffe://example.org/db/primary", "db_primary"},
	} {
		dir := filepath.Join(out, tc.dir)
		if !strings.Contains(stdout, tc.id+"\texpires ") || !strings.Contains(stdout, "\t"+dir+"\n") {
			t.Fatalf("stdout %q lacks %s in %s", stdout, tc.id, dir)
		}
		svid, err := client.LoadSVIDFiles(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "key.pem"))
		if err != nil || svid.ID.String() != tc.id {
			t.Fatalf("%s: %v %v", dir, svid, err)
		}
		if life := svid.Certificates[0].NotAfter.Sub(svid.Certificates[0].NotBefore); life != 20*time.Minute {
			t.Fatalf("lifetime %v, want the entry's 20m (no --ttl)", life)
		}
		if h.fake.Minted(tc.id).GetRenewingNotAfter() != 0 {
			t.Fatal("first fetch sent renewing_not_after")
		}
	}
	if _, err := os.Stat(filepath.Join(out, "denied")); !os.IsNotExist(err) {
		t.Fatalf("denied SVID directory exists: %v", err)
	}
	if n := h.fake.Calls("MintX509SVIDs"); n != 1 {
		t.Fatalf("%d mint calls, want one batch", n)
	}

	// A second fetch tells the server which SVID it renews.
	old, _ := client.LeafNotAfter(filepath.Join(out, "web", "svid.pem"))
	h.exec(ctxT(t), "fetch", "--out", out, "--ttl", "15m")
	if got := h.fake.Minted("spiffe://example.org/web").GetRenewingNotAfter(); got != old || got == 0 {
		t.Fatalf("renewing_not_after %d, want %d", got, old)
	}
	if got := h.fake.Minted("spiffe://example.org/web").GetTtlSeconds(); got != 900 {
		t.Fatalf("ttl_seconds %d, want 900", got)
	}
	if h.fake.Calls("RenewAgent") != 0 {
		t.Fatal("fresh agent SVID was renewed")
	}
}

func TestFetchNoEntries(t *testing.T) {
	h := newHarness(t, time.Hour)
	h.bootstrap("host-1")
	stdout, _, msg := h.exec(ctxT(t), "fetch", "--out", t.TempDir())
	if msg != "" || stdout != "no entries are granted to spiffe://example.org/tier0/agent/host-1\n" {
		t.Fatalf("got %q, %q", stdout, msg)
	}
	if h.fake.Calls("MintX509SVIDs") != 0 {
		t.Fatal("empty batch sent")
	}
}

func TestFetchRenewsAgentPastHalfLife(t *testing.T) {
	h := newHarness(t, time.Hour)
	h.bootstrap("host-1")
	h.now = func() time.Time { return time.Now().Add(31 * time.Minute) }
	_, _, msg := h.exec(ctxT(t), "fetch", "--out", t.TempDir())
	if msg != "" {
		t.Fatal(msg)
	}
	if h.fake.Calls("RenewAgent") != 1 {
		t.Fatalf("RenewAgent called %d times, want 1", h.fake.Calls("RenewAgent"))
	}
}

func TestFetchExpiredAgent(t *testing.T) {
	h := newHarness(t, time.Hour)
	h.bootstrap("host-1")
	h.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	_, _, msg := h.exec(ctxT(t), "fetch", "--out", t.TempDir())
	if !strings.HasPrefix(msg, "agent SVID spiffe://example.org/tier0/agent/host-1 expired at ") ||
		!strings.HasSuffix(msg, ": run `tier0-agent bootstrap` again with a new join token") {
		t.Fatalf("got %q", msg)
	}
}

func TestFetchPermissionDenied(t *testing.T) {
	h := newHarness(t, time.Hour)
	h.bootstrap("host-1")
	h.fake.SetHook(func(_ context.Context, m string) error {
		if m == "ListAuthorizedEntries" {
			return status.Error(codes.PermissionDenied, "agent host-1 is banned")
		}
		return nil
	})
	_, _, msg := h.exec(ctxT(t), "fetch", "--out", t.TempDir())
	if want := "list authorized entries: permission denied: agent host-1 is banned"; msg != want {
		t.Fatalf("got %q, want %q", msg, want)
	}
}

func TestFetchNeedsBootstrap(t *testing.T) {
	h := newHarness(t, time.Hour)
	_, _, msg := h.exec(ctxT(t), "fetch", "--out", t.TempDir())
	if want := fmt.Sprintf("no agent identity in %s: run `tier0-agent bootstrap` first", h.dataDir); msg != want {
		t.Fatalf("got %q, want %q", msg, want)
	}
}

func TestRenew(t *testing.T) {
	h := newHarness(t, time.Hour)
	h.bootstrap("host-1")
	dir := filepath.Join(h.dataDir, "agent")
	before, err := client.LoadSVIDFiles(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, msg := h.exec(ctxT(t), "renew"); msg != "" {
		t.Fatal(msg)
	}
	after, err := client.LoadSVIDFiles(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if after.Certificates[0].SerialNumber.Cmp(before.Certificates[0].SerialNumber) == 0 || after.ID != before.ID {
		t.Fatal("agent SVID not renewed")
	}
}

func TestRunKeepsAgentFresh(t *testing.T) {
	h := newHarness(t, 3*time.Second)
	h.bootstrap("host-1")
	ctx, cancel := context.WithCancel(ctxT(t))
	done := make(chan string, 1)
	go func() {
		_, _, msg := h.exec(ctx, "run", "--bundle-refresh", "50ms")
		done <- msg
	}()
	deadline := time.Now().Add(20 * time.Second)
	for h.fake.Calls("RenewAgent") < 2 || h.fake.Calls("GetBundle") < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("after 20s: %d renewals, %d bundle fetches", h.fake.Calls("RenewAgent"), h.fake.Calls("GetBundle"))
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
	cancel()
	if msg := <-done; msg != "" {
		t.Fatalf("run: %s", msg)
	}
}

func TestDescribe(t *testing.T) {
	st := status.Error(codes.ResourceExhausted, "slow down")
	tests := []struct {
		err  error
		want string
	}{
		{err: fmt.Errorf("mint: %w", st), want: "mint: resource exhausted: slow down"},
		{err: st, want: "resource exhausted: slow down"},
		{err: errors.New("plain"), want: "plain"},
	}
	for _, tt := range tests {
		if got := describe(tt.err); got != tt.want {
			t.Errorf("describe(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestDirName(t *testing.T) {
	for id, want := range map[string]string{
		"spiffe://example.org/web":            "web",
		"spiffe://example.org/ns/prod/sa/api": "ns_prod_sa_api",
		"spiffe://example.org":                "_",
	} {
		if got := dirName(spiffeid.RequireFromString(id)); got != want {
			t.Errorf("dirName(%s) = %q, want %q", id, got, want)
		}
	}
}
