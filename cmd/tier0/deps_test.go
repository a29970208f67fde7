package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoFakesLinked: the production binary links no KMS fake (they live in
// tier0-dev). The same listing of tier0-dev must show them, so the check
// can see a fake when one is there.
func TestNoFakesLinked(t *testing.T) {
	deps := func(pkg string) []string {
		t.Helper()
		return depsMatching(t, pkg, func(p string) bool { return strings.Contains(p, "/kmsfake") })
	}
	if fakes := deps("github.com/tier0-ca/tier0/cmd/tier0"); len(fakes) > 0 {
		t.Errorf("tier0 links fakes: %v", fakes)
	}
	if fakes := deps("github.com/tier0-ca/tier0/cmd/tier0-dev"); len(fakes) < 2 {
		t.Errorf("tier0-dev links %v; want the AWS and GCP fakes (is the check blind?)", fakes)
	}
}

// TestServerLinksNoAgentIntegrations: the Envoy, Kubernetes and OIDC
// client libraries the agent and the tests use stay out of the server
// binary (the OIDC provider needs none); the agent's listing must show
// go-control-plane, so the check can see it when it is there.
func TestServerLinksNoAgentIntegrations(t *testing.T) {
	heavy := func(p string) bool {
		return strings.Contains(p, "envoyproxy/go-control-plane") || strings.HasPrefix(p, "k8s.io/") || strings.Contains(p, "coreos/go-oidc") || strings.Contains(p, "/k8sattest")
	}
	if hits := depsMatching(t, "github.com/tier0-ca/tier0/cmd/tier0", heavy); len(hits) > 0 {
		t.Errorf("tier0 links %v", hits)
	}
	if hits := depsMatching(t, "github.com/tier0-ca/tier0/cmd/tier0-agent", heavy); len(hits) < 2 {
		t.Errorf("tier0-agent links %v; want go-control-plane and k8sattest (is the check blind?)", hits)
	}
}

// depsMatching lists the packages pkg links that match.
func depsMatching(t *testing.T, pkg string, match func(string) bool) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	var hits []string
	for _, p := range strings.Fields(string(out)) {
		if match(p) {
			hits = append(hits, p)
		}
	}
	return hits
}
