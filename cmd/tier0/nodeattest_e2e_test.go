package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tier0-ca/tier0/internal/nodeattest/attesttest"
)

// TestNodeAttestation: agents (separate processes) bootstrap with each
// node attestor from evidence signed by test keys that the server's
// config file names as trust anchors; wrong account, project, cluster,
// expired, replayed and mis-signed evidence is refused with
// PermissionDenied and a decision row; a node-selector entry grants its ID
// to every agent attested with the selector and to no other.
func TestNodeAttestation(t *testing.T) {
	dir := t.TempDir()
	file := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	now := time.Now()
	const aud = "spiffe://example.org"
	hostCA, rogueCA, awsCA := attesttest.NewCA(t, "hosts"), attesttest.NewCA(t, "rogue"), attesttest.NewCA(t, "aws")
	prod, dev := attesttest.NewIssuer(t, "https://k8s.prod", "p1"), attesttest.NewIssuer(t, "https://k8s.dev", "d1")
	impostor := attesttest.NewIssuer(t, "https://k8s.prod", "p1") // same kid, other key
	google := attesttest.NewIssuer(t, "https://accounts.google.com", "g1")
	config := file("tier0.yaml", []byte(`
attestor-x509pop:
  ca_bundle: `+file("hosts.pem", hostCA.PEM())+`
  agent_name: "host-{{.CN}}"
attestor-k8s-psat:
  clusters:
    prod:
      jwks_file: `+file("prod.jwks", prod.JWKS(t))+`
      issuer: https://k8s.prod
      service_account_allow_list: ["tier0:tier0-agent"]
    dev:
      jwks_file: `+file("dev.jwks", dev.JWKS(t))+`
      service_account_allow_list: ["tier0:tier0-agent"]
attestor-gcp-iit:
  jwks_file: `+file("google.jwks", google.JWKS(t))+`
  project_allow_list: [proj-a]
attestor-aws-iid:
  region_certs:
    us-east-1: `+file("aws.pem", awsCA.PEM())+`
  account_allow_list: ["111122223333"]
`))
	data := t.TempDir()
	srv := startServer(t, data, "--config", config)
	bundle := filepath.Join(data, "bundle.pem")

	// bootstrap runs `tier0-agent bootstrap --attestor ...` into a new
	// data dir and returns it.
	bootstrap := func(args ...string) (string, string, error) {
		agentDir := t.TempDir()
		out, err := runBin("tier0-agent", append([]string{"bootstrap", "--server", srv.addr(), "--bundle", bundle, "--data-dir", agentDir}, args...)...)
		return agentDir, out, err
	}
	ok := func(wantID string, args ...string) string {
		t.Helper()
		agentDir, out, err := bootstrap(args...)
		if err != nil || !strings.Contains(out, wantID+"\t") {
			t.Fatalf("bootstrap %v: %v\n%s", args, err, out)
		}
		return agentDir
	}
	var denials []string
	refused := func(what, reason string, args ...string) {
		t.Helper()
		_, out, err := bootstrap(args...)
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "permission denied") || !strings.Contains(err.Error(), reason) {
			t.Fatalf("%s: want PermissionDenied with %q, got %v\n%s", what, reason, err, out)
		}
		denials = append(denials, reason)
	}

	// x509pop.
	cert, key := hostCA.Host(t, "web-1", []string{"web-1.example.org"}, now.Add(-time.Hour), now.Add(time.Hour))
	x509Args := func(c, k string) []string {
		return []string{"--attestor", "x509pop", "--x509pop-cert", c, "--x509pop-key", k}
	}
	ok("spiffe://example.org/tier0/agent/host-web-1", x509Args(file("web1.pem", attesttest.CertPEM(cert)), file("web1.key", attesttest.KeyPEM(t, key)))...)
	old, oldKey := hostCA.Host(t, "old", nil, now.Add(-3*time.Hour), now.Add(-2*time.Hour))
	refused("expired host certificate", "expired", x509Args(file("old.pem", attesttest.CertPEM(old)), file("old.key", attesttest.KeyPEM(t, oldKey)))...)
	rc, rk := rogueCA.Host(t, "web-1", nil, now.Add(-time.Hour), now.Add(time.Hour))
	refused("host certificate of another CA", "unknown authority", x509Args(file("rogue.pem", attesttest.CertPEM(rc)), file("rogue.key", attesttest.KeyPEM(t, rk)))...)
	_, otherKey := hostCA.Host(t, "web-2", nil, now.Add(-time.Hour), now.Add(time.Hour))
	refused("key that is not the certificate's", "proof of possession", x509Args(file("web1b.pem", attesttest.CertPEM(cert)), file("other.key", attesttest.KeyPEM(t, otherKey)))...)

	// x509pop may attest again (a fresh nonce each time), unless the agent is banned.
	web1 := x509Args(file("web1c.pem", attesttest.CertPEM(cert)), file("web1c.key", attesttest.KeyPEM(t, key)))
	ok("spiffe://example.org/tier0/agent/host-web-1", web1...)
	must(srv.cli("agent", "ban", "host-web-1"))
	refused("banned agent", "banned", web1...)

	// k8s_psat.
	psat := func(name string, is *attesttest.Issuer, cluster, podUID, node string, exp time.Time) []string {
		tok := is.Sign(t, aud, now.Add(-time.Minute), exp, attesttest.PSATClaims("tier0", "tier0-agent", "agent-"+podUID, podUID, node, "uid-"+node))
		return []string{"--attestor", "k8s_psat", "--k8s-psat-cluster", cluster, "--k8s-psat-token-file", file(name, []byte(tok))}
	}
	prodA := psat("prod-a.tok", prod, "prod", "pod-a", "node-a", now.Add(10*time.Minute))
	agentA := ok("spiffe://example.org/tier0/agent/k8s_psat.prod.uid-node-a", prodA...)
	refused("replayed token", "already used", prodA...)
	refused("new token, same pod", "already used", psat("prod-a2.tok", prod, "prod", "pod-a", "node-a", now.Add(10*time.Minute))...)
	agentB := ok("spiffe://example.org/tier0/agent/k8s_psat.prod.uid-node-b", psat("prod-b.tok", prod, "prod", "pod-b", "node-b", now.Add(10*time.Minute))...)
	agentDev := ok("spiffe://example.org/tier0/agent/k8s_psat.dev.uid-node-c", psat("dev-c.tok", dev, "dev", "pod-c", "node-c", now.Add(10*time.Minute))...)
	refused("wrong cluster", "not configured", psat("stage.tok", prod, "stage", "pod-s", "node-s", now.Add(10*time.Minute))...)
	refused("token of another cluster's issuer", "unknown key", psat("cross.tok", dev, "prod", "pod-x", "node-x", now.Add(10*time.Minute))...)
	refused("mis-signed token", "signature", psat("impostor.tok", impostor, "prod", "pod-i", "node-i", now.Add(10*time.Minute))...)
	refused("expired token", "expired", psat("expired.tok", prod, "prod", "pod-e", "node-e", now.Add(-5*time.Minute))...)

	// gcp_iit.
	gce := func(name, project, instance string, is *attesttest.Issuer, exp time.Time) []string {
		tok := is.Sign(t, aud, now.Add(-time.Minute), exp, attesttest.GCEClaims(project, "europe-west1-b", instance, "vm-"+instance))
		return []string{"--attestor", "gcp_iit", "--gcp-iit-token-file", file(name, []byte(tok))}
	}
	gceOK := gce("gce.tok", "proj-a", "101", google, now.Add(time.Hour))
	ok("spiffe://example.org/tier0/agent/gcp_iit.proj-a.101", gceOK...)
	refused("replayed instance token", "already used", gceOK...)
	refused("wrong project", "not allowed", gce("gce-b.tok", "proj-b", "102", google, now.Add(time.Hour))...)
	refused("expired instance token", "expired", gce("gce-old.tok", "proj-a", "103", google, now.Add(-5*time.Minute))...)
	refused("mis-signed instance token", "signature", gce("gce-bad.tok", "proj-a", "104", attesttest.NewIssuer(t, "https://accounts.google.com", "g1"), now.Add(time.Hour))...)

	// The agent fetches the token from the metadata server itself (a test
	// server standing in for GCE's, which cannot run here).
	meta := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" || r.URL.Query().Get("audience") != aud {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, google.Sign(t, aud, now.Add(-time.Minute), now.Add(time.Hour), attesttest.GCEClaims("proj-a", "europe-west1-b", "105", "vm-105")))
	}))
	defer meta.Close()
	ok("spiffe://example.org/tier0/agent/gcp_iit.proj-a.105", "--attestor", "gcp_iit", "--gcp-metadata-url", meta.URL)

	// aws_iid.
	iid := func(name, account, instance string, signer *attesttest.CA) []string {
		doc := attesttest.AWSDocument(account, "us-east-1", instance)
		return []string{"--attestor", "aws_iid", "--aws-iid-document-file", file(name+".json", doc), "--aws-iid-pkcs7-file", file(name+".p7", []byte(attesttest.SignAWS(t, signer, doc)))}
	}
	awsOK := iid("iid", "111122223333", "i-0aaa", awsCA)
	ok("spiffe://example.org/tier0/agent/aws_iid.111122223333.us-east-1.i-0aaa", awsOK...)
	refused("replayed identity document", "already used", awsOK...)
	refused("wrong account", "not allowed", iid("iid-b", "999988887777", "i-0bbb", awsCA)...)
	refused("mis-signed identity document", "signature", iid("iid-c", "111122223333", "i-0ccc", rogueCA)...)

	// A node-selector entry: every prod agent gets the fleet ID, the dev
	// agent and the others do not.
	must(srv.cli("entry", "create", "--node-selector", "k8s_psat:cluster:prod", "--node-selector", "k8s_psat:agent_ns:tier0", "--spiffe-id", "spiffe://example.org/fleet"))
	if _, err := srv.cli("entry", "create", "--agent", "x", "--node-selector", "k8s_psat:cluster:prod", "--spiffe-id", "spiffe://example.org/y"); err == nil {
		t.Fatal("an entry with an agent and node selectors was accepted")
	}
	for _, a := range []string{agentA, agentB} {
		out := t.TempDir()
		must(runBin("tier0-agent", "fetch", "--data-dir", a, "--out", out))
		s := loadSVID(t, out, "spiffe://example.org/fleet")
		if _, _, err := x509svid.Verify(s.Certificates, srv.bundle()); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	_, _ = runBin("tier0-agent", "fetch", "--data-dir", agentDev, "--out", out)
	if hasSVIDFile(out) {
		t.Fatal("the dev agent got an SVID from the prod node-selector entry")
	}

	// Every refusal is a decision row naming the attestor and the reason.
	pollUntil(t, 30*time.Second, func() bool {
		raw, err := srv.cli("audit", "decisions", "--denied", "-o", "json")
		if err != nil {
			return false
		}
		for _, r := range denials {
			if !strings.Contains(raw, r) {
				return false
			}
		}
		return strings.Contains(raw, "attestor:k8s_psat") && strings.Contains(raw, "attestor:aws_iid") &&
			strings.Contains(raw, "attestor:gcp_iit") && strings.Contains(raw, "attestor:x509pop")
	})
	raw := must(srv.cli("audit", "decisions", "-o", "json"))
	allowed := 0
	for _, line := range strings.Split(strings.TrimSpace(raw), "\n") { // one JSON object a line
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("decision %q: %v", line, err)
		}
		if c, _ := r["caller"].(string); strings.HasPrefix(c, "attestor:") && r["decision"] == "allow" {
			allowed++
		}
	}
	// The outcome counters (one allowed aws_iid, three denied).
	resp, err := http.Get("http://" + srv.info.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`tier0_node_attestations_total{attestor="aws_iid",outcome="allowed"} 1`, `tier0_node_attestations_total{attestor="aws_iid",outcome="denied"} 3`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if allowed != 8 {
		t.Fatalf("%d allowed attestation rows, want 8:\n%s", allowed, raw)
	}
}

func hasSVIDFile(dir string) bool {
	found := false
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "svid.pem" {
			found = true
		}
		return nil
	})
	return found
}
