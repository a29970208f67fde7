package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func readAgentConfig(t *testing.T, dataDir string) agentConfig {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dataDir, "agent", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg agentConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestRunBootstrapsFromTokenFile: `run --join-token-file` bootstraps an
// agent with no identity (a DaemonSet pod's first start on a node), then
// serves; a later start with the identity does not read the file, which
// may be gone.
func TestRunBootstrapsFromTokenFile(t *testing.T) {
	h := newHarness(t, time.Hour)
	h.fake.AddToken("tok-node-a", "node-a")
	tokenFile := filepath.Join(t.TempDir(), "node-a")
	if err := os.WriteFile(tokenFile, []byte("tok-node-a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runUntilServing := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithCancel(ctxT(t))
		done := make(chan string, 1)
		go func() {
			_, _, msg := h.exec(ctx, append([]string{"run", "--socket", filepath.Join(h.dataDir, "a.sock")}, args...)...)
			done <- msg
		}()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if _, err := os.Stat(filepath.Join(h.dataDir, "a.sock")); err == nil {
				break
			}
			select {
			case msg := <-done:
				t.Fatalf("run ended before serving: %s", msg)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatal("run does not serve after 20s")
			}
			time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
		}
		cancel()
		if msg := <-done; msg != "" {
			t.Fatalf("run: %s", msg)
		}
	}
	runUntilServing("--server", h.addr, "--join-token-file", tokenFile, "--bundle", h.bundlePath)
	if cfg := readAgentConfig(t, h.dataDir); cfg.TrustDomain != "example.org" || !slices.Equal(cfg.Servers, []string{h.addr}) {
		t.Fatalf("config after first start: %+v", cfg)
	}
	if n := h.fake.Calls("AttestJoinToken"); n != 1 {
		t.Fatalf("%d token exchanges, want 1", n)
	}
	if err := os.Remove(tokenFile); err != nil {
		t.Fatal(err)
	}
	runUntilServing("--join-token-file", tokenFile, "--bundle", h.bundlePath)
	if n := h.fake.Calls("AttestJoinToken"); n != 1 {
		t.Fatalf("a restart exchanged a token again (%d)", n)
	}
}

// TestRunNoIdentityNoToken: a first start without the token file says so.
func TestRunNoIdentityNoToken(t *testing.T) {
	h := newHarness(t, time.Hour)
	_, _, msg := h.exec(ctxT(t), "run", "--join-token-file", filepath.Join(t.TempDir(), "missing"), "--bundle", h.bundlePath)
	if want := "no agent identity in " + h.dataDir + " yet and no join token: open "; !strings.HasPrefix(msg, want) {
		t.Fatalf("got %q, want prefix %q", msg, want)
	}
}

// TestServerRemembered: a --server given to a later command replaces the
// servers in the agent config, so the next command needs no flag.
func TestServerRemembered(t *testing.T) {
	h := newHarness(t, time.Hour)
	h.bootstrap("host-1")
	other := h.fake.Start(t, "n2")
	if _, _, msg := h.exec(ctxT(t), "renew", "--server", other); msg != "" {
		t.Fatal(msg)
	}
	if cfg := readAgentConfig(t, h.dataDir); !slices.Equal(cfg.Servers, []string{other}) {
		t.Fatalf("servers %v, want [%s]", cfg.Servers, other)
	}
	if _, _, msg := h.exec(ctxT(t), "renew"); msg != "" {
		t.Fatal(msg)
	}
}
