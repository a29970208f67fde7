package main

import (
	"os/exec"
	"strings"
	"testing"
)

// deployOnly are the module paths the deploy module brings that the
// binaries must never link.
var deployOnly = []string{"helm.sh/", "k8s.io/", "sigs.k8s.io/", "github.com/google/go-containerregistry"}

func linked(t *testing.T, dir string, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-deps"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %v: %v", args, err)
	}
	var hits []string
	for _, p := range strings.Fields(string(out)) {
		for _, prefix := range deployOnly {
			if strings.HasPrefix(p, prefix) {
				hits = append(hits, p)
			}
		}
	}
	return hits
}

// TestBinariesLinkNoDeployModules: tier0, tier0-agent, tier0-loadtest and
// tier0-dev link none of Helm, Kubernetes or go-containerregistry; the same
// listing of this module's tests finds them (the check is not blind).
func TestBinariesLinkNoDeployModules(t *testing.T) {
	if hits := linked(t, "../..", "./cmd/..."); len(hits) > 0 {
		t.Errorf("the binaries link deploy-only packages: %v", hits)
	}
	if hits := linked(t, "..", "-test", "./image", "./helm"); len(hits) < 10 {
		t.Errorf("the deploy module's tests list only %v: is the check blind?", hits)
	}
}
