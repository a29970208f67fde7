package main

import (
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tier0-ca/tier0/internal/testenv"
)

// TestQuickStart follows the README: server, token, entry, agent bootstrap,
// agent fetch; the SVID files verify against the bundle, two of them complete
// an mTLS handshake, audit list shows them, and a restart keeps the CA.
func TestQuickStart(t *testing.T) {
	data := t.TempDir()
	srv := startServer(t, data)

	token := strings.TrimSpace(must(srv.cli("token", "create", "--agent", "host-1")))
	if len(token) < 32 {
		t.Fatalf("token %q looks too short", token)
	}
	for _, id := range []string{"spiffe://example.org/web", "spiffe://example.org/db"} {
		out := must(srv.cli("entry", "create", "--agent", "host-1", "--spiffe-id", id, "--ttl", "20m"))
		if !strings.Contains(out, id) {
			t.Fatalf("entry create output lacks %s: %s", id, out)
		}
	}
	agentDir := t.TempDir()
	must(runBin("tier0-agent", "bootstrap", "--server", srv.addr(), "--bundle", filepath.Join(data, "bundle.pem"), "--token", token, "--data-dir", agentDir))
	// The token works once.
	if _, err := runBin("tier0-agent", "bootstrap", "--server", srv.addr(), "--bundle", filepath.Join(data, "bundle.pem"), "--token", token, "--data-dir", t.TempDir()); err == nil || !strings.Contains(err.Error(), "PermissionDenied") && !strings.Contains(strings.ToLower(err.Error()), "permission denied") {
		t.Fatalf("reused token: want permission denied, got %v", err)
	}

	out := t.TempDir()
	must(runBin("tier0-agent", "fetch", "--data-dir", agentDir, "--out", out))
	web := loadSVID(t, out, "spiffe://example.org/web")
	db := loadSVID(t, out, "spiffe://example.org/db")
	bundle := srv.bundle()
	for _, s := range []*x509svid.SVID{web, db} {
		id, _, err := x509svid.Verify(s.Certificates, bundle)
		if err != nil {
			t.Fatalf("verify %s: %v", s.ID, err)
		}
		leaf := s.Certificates[0]
		if id != s.ID || leaf.KeyUsage != x509.KeyUsageDigitalSignature || leaf.IsCA {
			t.Fatalf("bad profile for %s: ku=%v ca=%v", id, leaf.KeyUsage, leaf.IsCA)
		}
		if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 20*time.Minute || life > 21*time.Minute {
			t.Fatalf("lifetime %v, want the entry's 20m plus backdate", life)
		}
	}
	mtlsHandshake(t, web, db, bundle)

	// audit list shows both (the exporter may lag a moment).
	pollUntil(t, 20*time.Second, func() bool {
		out, err := srv.cli("audit", "list", "--agent", "spiffe://example.org/tier0/agent/host-1", "-o", "json")
		return err == nil && strings.Contains(out, web.Certificates[0].SerialNumber.Text(16)) && strings.Contains(out, db.Certificates[0].SerialNumber.Text(16))
	})

	// Restart keeps the same CA and data.
	rootBefore := must(os.ReadFile(filepath.Join(data, "bundle.pem")))
	srv.stop()
	srv.start()
	if got := must(os.ReadFile(filepath.Join(data, "bundle.pem"))); string(got) != string(rootBefore) {
		t.Fatal("bundle changed across restart")
	}
	list := must(srv.cli("entry", "list", "-o", "json"))
	if !strings.Contains(list, "spiffe://example.org/web") {
		t.Fatalf("entries lost across restart: %s", list)
	}
	out2 := t.TempDir()
	must(runBin("tier0-agent", "fetch", "--data-dir", agentDir, "--out", out2, "--server", srv.addr()))
	loadSVID(t, out2, "spiffe://example.org/web")
}

func loadSVID(t *testing.T, out, id string) *x509svid.SVID {
	t.Helper()
	var found *x509svid.SVID
	_ = filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "svid.pem" {
			return err
		}
		s, err := x509svid.Load(p, filepath.Join(filepath.Dir(p), "key.pem"))
		if err == nil && s.ID.String() == id {
			found = s
		}
		return nil
	})
	if found == nil {
		t.Fatalf("no SVID for %s under %s", id, out)
	}
	return found
}

// mtlsHandshake runs a real TLS handshake between two SVIDs, each side
// authorizing the other's exact ID.
func mtlsHandshake(t *testing.T, server, cl *x509svid.SVID, bundle *x509bundle.Bundle) {
	t.Helper()
	mtlsSources(t, server.ID, svidWithBundle{server, bundle}, cl.ID, svidWithBundle{cl, bundle})
}

// svidWithBundle is a fixed SVID and bundle as go-spiffe sources.
type svidWithBundle struct {
	*x509svid.SVID
	*x509bundle.Bundle
}

func pollUntil(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// must fails the test on err; for the test's own setup steps.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err) // recovered into a test failure by mustRecover
	}
	return v
}

// TestDefaultDataDir runs `tier0 server` and a CLI command with no
// --data-dir, as `make run` and the README do: the default ./tier0-data is
// relative to the working directory.
func TestDefaultDataDir(t *testing.T) {
	wd := t.TempDir()
	srv := exec.Command(filepath.Join(binDir, "tier0"), "server", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0")
	srv.Dir = wd
	log := &testenv.Buffer{}
	srv.Stdout, srv.Stderr = log, log
	srv.Env = append(os.Environ(), "TIER0_DATA=") // the flag default, not the environment
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = srv.Wait(); close(exited) }()
	t.Cleanup(func() { _ = srv.Process.Kill(); <-exited })
	pollUntil(t, 60*time.Second, func() bool {
		select {
		case <-exited:
			t.Fatalf("server exited:\n%s", log.String())
		default:
		}
		_, err := os.Stat(filepath.Join(wd, "tier0-data", "server.json"))
		return err == nil
	})
	cli := exec.Command(filepath.Join(binDir, "tier0"), "token", "create", "--agent", "host-1")
	cli.Dir = wd
	cli.Env = srv.Env
	if out, err := cli.CombinedOutput(); err != nil {
		t.Fatalf("token create in the default data dir: %v\n%s\nserver log:\n%s", err, out, log.String())
	}
}
