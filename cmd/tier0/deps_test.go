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
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		var fakes []string
		for _, p := range strings.Fields(string(out)) {
			if strings.Contains(p, "/kmsfake") {
				fakes = append(fakes, p)
			}
		}
		return fakes
	}
	if fakes := deps("github.com/tier0-ca/tier0/cmd/tier0"); len(fakes) > 0 {
		t.Errorf("tier0 links fakes: %v", fakes)
	}
	if fakes := deps("github.com/tier0-ca/tier0/cmd/tier0-dev"); len(fakes) < 2 {
		t.Errorf("tier0-dev links %v; want the AWS and GCP fakes (is the check blind?)", fakes)
	}
}
