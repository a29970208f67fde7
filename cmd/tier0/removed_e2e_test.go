package main

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRemovedNodeRefusesToStart: a member removed while it was down
// (its own log never got the removal) learns it from the others and
// refuses to start; a member removed while running turns not ready naming
// the removal, and restarted with its old data refuses to start. Both say
// how to bring it back, instead of sitting as a candidate the members
// ignore. The remaining member is a healthy cluster.
func TestRemovedNodeRefusesToStart(t *testing.T) {
	c := startCluster(t, 3)
	l := c.leader()
	down, live := (l+1)%3, (l+2)%3

	c.nodes[down].kill()
	if out := must(c.nodes[l].cli("cluster", "remove", nodeName(down))); !strings.HasPrefix(out, "removed "+nodeName(down)+" from the cluster") {
		t.Fatalf("cluster remove printed %q", out)
	}
	c.nodes[down].launch()
	refused(t, c.nodes[down], "no longer lists it", ", not "+nodeName(down)+";")

	must(c.nodes[l].cli("cluster", "remove", nodeName(live)))
	waitHealth(t, c.nodes[live], c.nodes[live].info.HTTP, "/readyz", http.StatusServiceUnavailable, "membership: ha: this node was removed from the cluster")
	c.nodes[live].stop()
	c.nodes[live].launch()
	refused(t, c.nodes[live], "the newest raft configuration in its data", ", not "+nodeName(live)+";")

	out := must(c.nodes[l].cli("cluster", "status"))
	if strings.Count(out, " yes ") != 1 || strings.Contains(out, "PROBLEM") {
		t.Fatalf("cluster status after the removals:\n%s", out)
	}
}

// refused waits for p to exit non-zero, its log naming the removal, want
// and how to rejoin.
func refused(t *testing.T, p *proc, want ...string) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("the removed node did not refuse to start:\n%s", p.log.String())
	}
	if code := p.cmd.ProcessState.ExitCode(); code == 0 {
		t.Fatalf("the removed node exited 0")
	}
	log := p.log.String()
	for _, w := range append(want, "this node was removed from the cluster", "tier0 token create --node ") {
		if !strings.Contains(log, w) {
			t.Fatalf("log lacks %q:\n%s", w, log)
		}
	}
}
