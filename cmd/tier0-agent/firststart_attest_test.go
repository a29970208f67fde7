package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRunBootstrapsByAttestation: `run --attestor NAME` (a DaemonSet with
// k8s_psat) node-attests an agent with no identity, then serves; a later
// start with the identity attests no more (its evidence may be gone);
// --attestor with --join-token-file is refused.
func TestRunBootstrapsByAttestation(t *testing.T) {
	h := newHarness(t, time.Hour)
	evidence := filepath.Join(t.TempDir(), "evidence.json")
	if err := os.WriteFile(evidence, []byte(`{"cluster":"prod","token":"projected"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	h.fake.AddEvidence(`{"cluster":"prod","token":"projected"}`, "k8s_psat.prod.node-b")
	serve := func(args ...string) {
		t.Helper()
		sock := filepath.Join(h.dataDir, "b.sock")
		ctx, cancel := context.WithCancel(ctxT(t))
		done := make(chan string, 1)
		go func() {
			_, _, msg := h.exec(ctx, append([]string{"run", "--socket", sock}, args...)...)
			done <- msg
		}()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if _, err := os.Stat(sock); err == nil {
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
	serve("--server", h.addr, "--attestor", "k8s_psat", "--evidence-file", evidence, "--bundle", h.bundlePath)
	if cfg := readAgentConfig(t, h.dataDir); cfg.TrustDomain != "example.org" || !slices.Equal(cfg.Servers, []string{h.addr}) {
		t.Fatalf("config after first start: %+v", cfg)
	}
	if n := h.fake.Calls("AttestAgent"); n != 1 {
		t.Fatalf("%d attestations, want 1", n)
	}
	if err := os.Remove(evidence); err != nil {
		t.Fatal(err)
	}
	serve("--attestor", "k8s_psat", "--evidence-file", evidence, "--bundle", h.bundlePath)
	if n := h.fake.Calls("AttestAgent"); n != 1 {
		t.Fatalf("a restart attested again (%d)", n)
	}
	_, _, msg := h.exec(ctxT(t), "run", "--attestor", "k8s_psat", "--join-token-file", evidence, "--bundle", h.bundlePath)
	if !strings.Contains(msg, "not both") {
		t.Fatalf("--attestor with --join-token-file: %q", msg)
	}
}
