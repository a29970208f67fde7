package main

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tier0-ca/tier0/api/client"
)

// rootIDOf names the root a chain descends from the way `tier0 ca list`
// does: the first 16 hex digits of the AuthorityKeyId of its last
// certificate (the leaf in direct mode, the intermediate in delegated).
func rootIDOf(chain []*x509.Certificate) string {
	id := hex.EncodeToString(chain[len(chain)-1].AuthorityKeyId)
	return id[:min(16, len(id))]
}

// agentBundleRoots returns the root IDs in an agent's DIR/agent/bundle.pem.
func agentBundleRoots(t *testing.T, srv *proc, agentDir string) map[string]bool {
	t.Helper()
	b, err := client.LoadBundleFile(filepath.Join(agentDir, "agent", "bundle.pem"), srv.td())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, c := range b.X509Authorities() {
		id := hex.EncodeToString(c.SubjectKeyId)
		out[id[:min(16, len(id))]] = true
	}
	return out
}

// verifyAgainstAgentBundle checks an SVID in OUT against the agent's own
// bundle.pem with go-spiffe and, independently, with `openssl verify`.
func verifyAgainstAgentBundle(t *testing.T, srv *proc, agentDir, out, id string) *x509svid.SVID {
	t.Helper()
	svid := loadSVID(t, out, id)
	bundlePath := filepath.Join(agentDir, "agent", "bundle.pem")
	b, err := client.LoadBundleFile(bundlePath, srv.td())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, b); err != nil {
		t.Fatalf("%s does not verify against the agent's bundle.pem: %v", id, err)
	}
	if openssl, err := exec.LookPath("openssl"); err == nil {
		dir := filepath.Join(out, strings.ReplaceAll(strings.TrimPrefix(svid.ID.Path(), "/"), "/", "_"))
		args := []string{"verify", "-CAfile", bundlePath, "-purpose", "any"}
		if len(svid.Certificates) > 1 { // the intermediate, from the chain file
			chain := filepath.Join(t.TempDir(), "chain.pem")
			if err := os.WriteFile(chain, pemCerts(svid.Certificates[1:]), 0o600); err != nil {
				t.Fatal(err)
			}
			args = append(args, "-untrusted", chain)
		}
		args = append(args, filepath.Join(dir, "svid.pem"))
		if outb, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, outb)
		}
	}
	return svid
}

// TestAgentFetchFollowsRootRotation: an agent that only runs `tier0-agent
// fetch` picks up a prepared root on its next fetch (bundle.pem gains it,
// written atomically), and after the switch it still talks to the node,
// whose own SVID now chains to the new root (renewed at the switch), and
// its new SVIDs verify
// against its bundle.pem (go-spiffe and openssl).
func TestAgentFetchFollowsRootRotation(t *testing.T) {
	data := t.TempDir()
	srv := startServer(t, data)
	token := strings.TrimSpace(must(srv.cli("token", "create", "--agent", "host-1")))
	must(srv.cli("entry", "create", "--agent", "host-1", "--spiffe-id", webID, "--ttl", "15m"))
	agentDir, out := t.TempDir(), t.TempDir()
	must(runBin("tier0-agent", "bootstrap", "--server", srv.addr(), "--bundle", filepath.Join(data, "bundle.pem"), "--token", token, "--data-dir", agentDir))
	must(runBin("tier0-agent", "fetch", "--data-dir", agentDir, "--out", out))
	oldRoot := rootIDOf(verifyAgainstAgentBundle(t, srv, agentDir, out, webID).Certificates)

	if _, err := srv.cli("ca", "taint", "nope"); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("taint an unknown root: %v", err)
	}
	if _, err := srv.cli("ca", "taint", "--jwt", ""); err == nil || !strings.Contains(err.Error(), "InvalidArgument") {
		t.Fatalf("taint an empty jwt key id: %v", err)
	}
	newRoot := strings.TrimSpace(must(srv.cli("ca", "prepare")))
	must(runBin("tier0-agent", "fetch", "--data-dir", agentDir, "--out", out))
	if got := agentBundleRoots(t, srv, agentDir); !got[oldRoot] || !got[newRoot] || len(got) != 2 {
		t.Fatalf("agent bundle after a fetch with root %s prepared: %v, want the old %s and the prepared %s", newRoot, got, oldRoot, newRoot)
	}
	// The SPIFFE bundle beside it has both roots and the JWT keys.
	sb, err := spiffebundle.Load(srv.td(), filepath.Join(agentDir, "agent", "bundle.spiffe.json"))
	if err != nil || len(sb.X509Authorities()) != 2 || len(sb.JWTAuthorities()) == 0 {
		t.Fatalf("agent bundle.spiffe.json: %v, %v", sb, err)
	}

	// --force skips the publish window, not the node's key report (made
	// within a second of the prepare).
	pollUntil(t, 20*time.Second, func() bool { _, err := srv.cli("ca", "activate", newRoot, "--force"); return err == nil })
	// The node renews its own serving SVID under the new root at once.
	pollUntil(t, 30*time.Second, func() bool { return servingRoot(t, srv.addr()) == newRoot })
	must(runBin("tier0-agent", "fetch", "--data-dir", agentDir, "--out", out))
	if got := rootIDOf(verifyAgainstAgentBundle(t, srv, agentDir, out, webID).Certificates); got != newRoot {
		t.Fatalf("SVID after the switch descends from %s, want the new root %s", got, newRoot)
	}
	if got := agentBundleRoots(t, srv, agentDir); !got[oldRoot] || !got[newRoot] {
		t.Fatalf("agent bundle after the switch: %v, want the old root kept while published", got)
	}
}

func pemCerts(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}
