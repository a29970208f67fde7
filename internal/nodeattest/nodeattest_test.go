package nodeattest

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/internal/nodeattest/attesttest"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

const aud = "spiffe://example.org"

func write(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// fixture holds trust anchors and a registry with all four attestors.
type fixture struct {
	reg           *Registry
	hostCA, awsCA *CA
	k8s, k8sOther *attesttest.Issuer
	google        *attesttest.Issuer
	now           time.Time
}

type CA = attesttest.CA

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{hostCA: attesttest.NewCA(t, "hosts"), awsCA: attesttest.NewCA(t, "aws"),
		k8s: attesttest.NewIssuer(t, "https://k8s.prod", "k1"), k8sOther: attesttest.NewIssuer(t, "https://k8s.prod", "k1"),
		google: attesttest.NewIssuer(t, "https://accounts.google.com", "g1"), now: time.Now()}
	sections := map[string]string{
		X509PoP: "ca_bundle: " + write(t, dir, "hosts.pem", f.hostCA.PEM()) + "\nagent_name: \"host-{{.CN}}\"\n",
		K8sPSAT: "clusters:\n  prod:\n    jwks_file: " + write(t, dir, "k8s.json", f.k8s.JWKS(t)) +
			"\n    issuer: https://k8s.prod\n    service_account_allow_list: [tier0:tier0-agent]\n",
		GCPIIT: "jwks_file: " + write(t, dir, "google.json", f.google.JWKS(t)) + "\nproject_allow_list: [proj-a]\n",
		AWSIID: "region_certs:\n  us-east-1: " + write(t, dir, "aws.pem", f.awsCA.PEM()) + "\naccount_allow_list: [\"111122223333\"]\n",
	}
	reg, err := New(Config{TrustDomain: td, Sections: sections})
	if err != nil {
		t.Fatal(err)
	}
	f.reg = reg
	return f
}

func (f *fixture) attest(t testing.TB, name string, evidence []byte, ch ChallengeFunc) (Result, error) {
	t.Helper()
	a, ok := f.reg.Get(name)
	if !ok {
		t.Fatalf("attestor %s not enabled", name)
	}
	return a.Attest(context.Background(), evidence, ch)
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func signer(key crypto.Signer) ChallengeFunc {
	return func(_ context.Context, nonce []byte) ([]byte, error) { return SignChallenge(key, td.Name(), nonce) }
}

func wantDenied(t *testing.T, what string, err error, reason string) {
	t.Helper()
	if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), reason) {
		t.Fatalf("%s: err = %v, want denied with %q", what, err, reason)
	}
}

func TestX509PoP(t *testing.T) {
	f := newFixture(t)
	cert, key := f.hostCA.Host(t, "web-1", []string{"web-1.example.org"}, f.now.Add(-time.Hour), f.now.Add(time.Hour))
	ev := mustJSON(t, X509PoPEvidence{Chain: [][]byte{cert.Raw}})
	res, err := f.attest(t, X509PoP, ev, signer(key))
	if err != nil {
		t.Fatal(err)
	}
	if res.AgentName != "host-web-1" || !slices.Contains(res.Selectors, "x509pop:subject:cn:web-1") ||
		!slices.Contains(res.Selectors, "x509pop:san:dns:web-1.example.org") || !slices.ContainsFunc(res.Selectors, func(s string) bool { return strings.HasPrefix(s, "x509pop:ca:fingerprint:") }) {
		t.Fatalf("result = %+v", res)
	}
	// Another key signs the nonce: no proof of possession.
	_, other := f.hostCA.Host(t, "web-2", nil, f.now.Add(-time.Hour), f.now.Add(time.Hour))
	_, err = f.attest(t, X509PoP, ev, signer(other))
	wantDenied(t, "wrong key", err, "proof of possession")
	// A replayed answer to an earlier nonce.
	var first []byte
	_, _ = f.attest(t, X509PoP, ev, func(ctx context.Context, n []byte) ([]byte, error) {
		first, err = SignChallenge(key, td.Name(), n)
		return first, err
	})
	_, err = f.attest(t, X509PoP, ev, func(context.Context, []byte) ([]byte, error) { return first, nil })
	wantDenied(t, "replayed signature", err, "proof of possession")
	// Expired certificate; certificate from another CA.
	exp, ekey := f.hostCA.Host(t, "old", nil, f.now.Add(-2*time.Hour), f.now.Add(-time.Hour))
	_, err = f.attest(t, X509PoP, mustJSON(t, X509PoPEvidence{Chain: [][]byte{exp.Raw}}), signer(ekey))
	wantDenied(t, "expired", err, "expired")
	rogue := attesttest.NewCA(t, "rogue")
	rc, rkey := rogue.Host(t, "web-1", nil, f.now.Add(-time.Hour), f.now.Add(time.Hour))
	_, err = f.attest(t, X509PoP, mustJSON(t, X509PoPEvidence{Chain: [][]byte{rc.Raw, rogue.Cert.Raw}}), signer(rkey))
	wantDenied(t, "rogue CA", err, "unknown authority")
	if _, err := f.attest(t, X509PoP, []byte(`{"chain":["AAAA"]}`), signer(key)); !errors.Is(err, ErrBadEvidence) {
		t.Fatalf("garbage: %v", err)
	}
}

func TestK8sPSAT(t *testing.T) {
	f := newFixture(t)
	claims := attesttest.PSATClaims("tier0", "tier0-agent", "agent-x", "pod-uid-1", "node-a", "node-uid-a")
	tok := f.k8s.Sign(t, aud, f.now, f.now.Add(10*time.Minute), claims)
	res, err := f.attest(t, K8sPSAT, mustJSON(t, K8sPSATEvidence{Cluster: "prod", Token: tok}), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"k8s_psat:cluster:prod", "k8s_psat:agent_ns:tier0", "k8s_psat:agent_sa:tier0-agent", "k8s_psat:agent_node_name:node-a"} {
		if !slices.Contains(res.Selectors, s) {
			t.Fatalf("selectors %v lack %s", res.Selectors, s)
		}
	}
	if res.AgentName != "k8s_psat.prod.node-uid-a" || len(res.Replay) != 2 || res.Replay[1].Key != "k8s_psat:pod_uid:prod:pod-uid-1" || !aboutWindow(res.Replay[1].Until, DefaultReplayWindow) {
		t.Fatalf("result = %+v", res)
	}
	cases := []struct{ name, cluster, tok, reason string }{
		{"wrong cluster", "dev", tok, "not configured"},
		{"expired", "prod", f.k8s.Sign(t, aud, f.now.Add(-time.Hour), f.now.Add(-10*time.Minute), claims), "expired"},
		{"wrong audience", "prod", f.k8s.Sign(t, "spiffe://other.org", f.now, f.now.Add(10*time.Minute), claims), "audience"},
		{"mis-signed", "prod", f.k8sOther.Sign(t, aud, f.now, f.now.Add(10*time.Minute), claims), "signature"},
		{"service account", "prod", f.k8s.Sign(t, aud, f.now, f.now.Add(10*time.Minute), attesttest.PSATClaims("default", "default", "p", "u", "n", "nu")), "not allowed"},
	}
	for _, c := range cases {
		_, err := f.attest(t, K8sPSAT, mustJSON(t, K8sPSATEvidence{Cluster: c.cluster, Token: c.tok}), nil)
		wantDenied(t, c.name, err, c.reason)
	}
}

func TestGCPIIT(t *testing.T) {
	f := newFixture(t)
	tok := f.google.Sign(t, aud, f.now, f.now.Add(time.Hour), attesttest.GCEClaims("proj-a", "europe-west1-b", "9876", "vm-1"))
	res, err := f.attest(t, GCPIIT, []byte(tok), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.AgentName != "gcp_iit.proj-a.9876" || !slices.Contains(res.Selectors, "gcp_iit:project-id:proj-a") ||
		!slices.Contains(res.Selectors, "gcp_iit:zone:europe-west1-b") || !slices.Contains(res.Selectors, "gcp_iit:instance-name:vm-1") {
		t.Fatalf("result = %+v", res)
	}
	if !slices.ContainsFunc(res.Replay, func(k ReplayKey) bool {
		return k.Key == "gcp_iit:instance:proj-a:9876" && aboutWindow(k.Until, DefaultReplayWindow)
	}) {
		t.Fatalf("replay = %+v", res.Replay)
	}
	_, err = f.attest(t, GCPIIT, []byte(f.google.Sign(t, aud, f.now, f.now.Add(time.Hour), attesttest.GCEClaims("proj-b", "z", "1", "vm"))), nil)
	wantDenied(t, "project", err, "not allowed")
	_, err = f.attest(t, GCPIIT, []byte(f.google.Sign(t, aud, f.now.Add(-2*time.Hour), f.now.Add(-time.Hour), attesttest.GCEClaims("proj-a", "z", "1", "vm"))), nil)
	wantDenied(t, "expired", err, "expired")
	other := attesttest.NewIssuer(t, "https://accounts.google.com", "g1")
	_, err = f.attest(t, GCPIIT, []byte(other.Sign(t, aud, f.now, f.now.Add(time.Hour), attesttest.GCEClaims("proj-a", "z", "1", "vm"))), nil)
	wantDenied(t, "mis-signed", err, "signature")
}

func TestAWSIID(t *testing.T) {
	f := newFixture(t)
	doc := attesttest.AWSDocument("111122223333", "us-east-1", "i-0abc")
	ev := mustJSON(t, AWSIIDEvidence{Document: string(doc), PKCS7: attesttest.SignAWS(t, f.awsCA, doc)})
	res, err := f.attest(t, AWSIID, ev, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.AgentName != "aws_iid.111122223333.us-east-1.i-0abc" || !slices.Contains(res.Selectors, "aws_iid:account:111122223333") ||
		!slices.Contains(res.Selectors, "aws_iid:region:us-east-1") || !slices.Contains(res.Selectors, "aws_iid:instance-id:i-0abc") ||
		len(res.Replay) != 1 || res.Replay[0].Key != "aws_iid:instance:111122223333:i-0abc" || !aboutWindow(res.Replay[0].Until, DefaultReplayWindow) {
		t.Fatalf("result = %+v", res)
	}
	wrong := attesttest.AWSDocument("999999999999", "us-east-1", "i-0abc")
	_, err = f.attest(t, AWSIID, mustJSON(t, AWSIIDEvidence{Document: string(wrong), PKCS7: attesttest.SignAWS(t, f.awsCA, wrong)}), nil)
	wantDenied(t, "account", err, "not allowed")
	west := attesttest.AWSDocument("111122223333", "us-west-2", "i-0abc")
	_, err = f.attest(t, AWSIID, mustJSON(t, AWSIIDEvidence{Document: string(west), PKCS7: attesttest.SignAWS(t, f.awsCA, west)}), nil)
	wantDenied(t, "region", err, "no certificate")
	// Signed by another key; a signature over another document.
	rogue := attesttest.NewCA(t, "aws")
	_, err = f.attest(t, AWSIID, mustJSON(t, AWSIIDEvidence{Document: string(doc), PKCS7: attesttest.SignAWS(t, rogue, doc)}), nil)
	wantDenied(t, "mis-signed", err, "signature")
	_, err = f.attest(t, AWSIID, mustJSON(t, AWSIIDEvidence{Document: string(wrong), PKCS7: attesttest.SignAWS(t, f.awsCA, doc)}), nil)
	wantDenied(t, "swapped document", err, "another document")
}

func TestConfigErrors(t *testing.T) {
	for name, text := range map[string]string{
		X509PoP: "ca_bundle: /nonexistent\n",
		K8sPSAT: "clusters: {}\n",
		GCPIIT:  "jwks_file: /x\n",
		AWSIID:  "region_certs: {us-east-1: /nonexistent}\naccount_allow_list: [\"1\"]\n",
		"nope":  "a: b\n",
	} {
		if _, err := New(Config{TrustDomain: td, Sections: map[string]string{name: text}}); err == nil {
			t.Errorf("%s: config %q accepted", name, text)
		}
	}
	if _, err := New(Config{TrustDomain: td, Sections: map[string]string{X509PoP: "ca_bundel: x\n"}}); err == nil || !strings.Contains(err.Error(), "ca_bundel") {
		t.Errorf("unknown key: %v", err)
	}
}

// aboutWindow reports whether until is window from now (within a minute).
func aboutWindow(until time.Time, window time.Duration) bool {
	d := time.Until(until) - window
	return d > -time.Minute && d < time.Minute
}

// TestReplayWindowConfig: replay_window sets how long an instance ID is
// kept; outside 1m..MaxReplayWindow it is refused at startup.
func TestReplayWindowConfig(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	base := "region_certs:\n  us-east-1: " + write(t, dir, "aws.pem", f.awsCA.PEM()) + "\naccount_allow_list: [\"111122223333\"]\n"
	reg, err := New(Config{TrustDomain: td, Sections: map[string]string{AWSIID: base + "replay_window: 48h\n"}})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := reg.Get(AWSIID)
	doc := attesttest.AWSDocument("111122223333", "us-east-1", "i-0abc")
	res, err := a.Attest(context.Background(), mustJSON(t, AWSIIDEvidence{Document: string(doc), PKCS7: attesttest.SignAWS(t, f.awsCA, doc)}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Replay) != 1 || !aboutWindow(res.Replay[0].Until, 48*time.Hour) {
		t.Fatalf("replay = %+v", res.Replay)
	}
	for _, w := range []string{"30s", "9000h", "-1h"} {
		if _, err := New(Config{TrustDomain: td, Sections: map[string]string{AWSIID: base + "replay_window: " + w + "\n"}}); err == nil || !strings.Contains(err.Error(), "replay_window") {
			t.Errorf("replay_window %s: err = %v", w, err)
		}
	}
}
