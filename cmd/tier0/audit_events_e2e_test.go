package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/ha"
)

// checkAdminEvents: `audit list --kind admin` lists the state changes
// behind the agent the test created: its join token, created by the
// admin, and consumed at its attestation; each with actor, subject and
// content, and never the token itself.
func checkAdminEvents(t *testing.T, srv *proc) {
	t.Helper()
	out, err := srv.cli("audit", "list", "--kind", "admin", "--limit", "1000", "-o", "json")
	if err != nil {
		t.Fatalf("audit list --kind admin: %v\n%s", err, out)
	}
	seen := map[string]map[string]any{}
	for line := range strings.Lines(out) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if m["kind"] != "admin" || m["event_action"] == "" || m["agent_id"] == "" || m["spiffe_id"] == "" {
			t.Fatalf("not an admin event: %v", m)
		}
		seen[m["event_action"].(string)] = m
	}
	c, ok := seen["token.create"]
	if !ok || c["agent_id"] != "spiffe://example.org/tier0/admin" {
		t.Fatalf("no token.create by the admin among %d events: %s", len(seen), out)
	}
	if d, _ := c["event_detail"].(map[string]any); d == nil || len(d["hash"].(string)) != 64 {
		t.Fatalf("token.create detail %v", c["event_detail"])
	}
	for _, a := range []string{"token.consume", "ca.create", "jwt.publish"} {
		if _, ok := seen[a]; !ok {
			t.Errorf("no %s event among %v", a, slices.Collect(maps.Keys(seen)))
		}
	}
}

// checkShowChain: `audit show --serial S -o json` of a workload SVID
// gives the leaf and its chain: the recorded intermediate (with its seq)
// and the bundle's root; and the trust domain's records hold the audit key
// certificate (no URI SAN, the checkpoint EKU) besides the intermediates.
func checkShowChain(t *testing.T, srv *proc, spiffeID string) {
	t.Helper()
	out, err := srv.cli("audit", "list", "--kind", "x509", "--spiffe-id", spiffeID, "--limit", "1", "-o", "json")
	if err != nil {
		t.Fatalf("audit list: %v\n%s", err, out)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	out, err = srv.cli("audit", "show", "--serial", rec["serial_hex"].(string), "-o", "json")
	if err != nil {
		t.Fatalf("audit show --serial: %v\n%s", err, out)
	}
	var shown struct {
		Chain []struct {
			Role    string `json:"role"`
			Seq     uint64 `json:"seq"`
			SKI     string `json:"subject_key_id"`
			AKI     string `json:"authority_key_id"`
			PEM     string `json:"pem"`
			Subject string `json:"subject"`
		} `json:"chain"`
		ChainError  string `json:"chain_error"`
		IssuerKeyID string `json:"issuer_key_id"`
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	c := shown.Chain
	if shown.ChainError != "" || len(c) != 3 || c[0].Role != "leaf" || c[1].Role != "intermediate" || c[1].Seq == 0 ||
		c[1].SKI != shown.IssuerKeyID || c[2].Role != "root (bundle)" || c[2].SKI != c[1].AKI || !strings.Contains(c[2].PEM, "BEGIN CERTIFICATE") {
		t.Fatalf("audit show chain: %s", out)
	}
	bundle, err := os.ReadFile(filepath.Join(srv.dataDir, "bundle.pem"))
	if err != nil || !strings.Contains(string(bundle), strings.TrimSpace(c[2].PEM)) {
		t.Fatalf("the chain's root is not the bundle's: %v", err)
	}
	if out, err := srv.cli("audit", "show", rec["serial_hex"].(string)); err != nil || !strings.Contains(out, "issuer (intermediate, seq") ||
		!strings.Contains(out, "issuer (root (bundle)") {
		t.Fatalf("audit show (table): %v\n%s", err, out)
	}
	// The audit key certificate is recorded (ca.AuditKeyRecord).
	out, err = srv.cli("audit", "list", "--spiffe-id", "spiffe://example.org", "--limit", "1000", "-o", "json")
	if err != nil {
		t.Fatalf("audit list: %v", err)
	}
	found := false
	for line := range strings.Lines(out) {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		o, err := srv.cli("audit", "show", m["serial_hex"].(string))
		if err == nil && strings.Contains(o, "issuer (root (bundle)") && !strings.Contains(o, "issuer (intermediate") {
			if cert := certOf(t, o); cert != nil && len(cert.URIs) == 0 && !cert.IsCA && len(cert.UnknownExtKeyUsage) == 1 {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("no audit key certificate among the trust domain's records:\n%s", out)
	}
}

// certOf parses the first PEM certificate in s.
func certOf(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	i := strings.Index(s, "-----BEGIN CERTIFICATE-----")
	if i < 0 {
		return nil
	}
	b, _ := pem.Decode([]byte(s[i:]))
	if b == nil {
		return nil
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil
	}
	return c
}

// journalAfter opens the stopped node's journal in dataDir and returns its
// records after seq (unexported ones: a refused node exports nothing).
func journalAfter(t *testing.T, dataDir, nodeID string, seq uint64) []*record.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node, err := ha.New(ctx, ha.Config{NodeID: nodeID, DataDir: dataDir, Bootstrap: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	if err := node.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return node.Tail(seq, 1<<20)
}
