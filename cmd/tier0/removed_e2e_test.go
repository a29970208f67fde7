package main

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRemovedNodeRefusesToStart: `tier0 cluster remove` says what it did;
// the removed member, still running, turns not ready naming the removal;
// restarted with its old data it refuses to start with a clear message
// (instead of sitting as a candidate the members ignore); the other two
// are a healthy cluster.
func TestRemovedNodeRefusesToStart(t *testing.T) {
	c := startCluster(t, 3)
	l := c.leader()
	v := (l + 1) % 3
	out := must(c.nodes[l].cli("cluster", "remove", nodeName(v)))
	if !strings.HasPrefix(out, "removed "+nodeName(v)+" from the cluster") {
		t.Fatalf("cluster remove printed %q", out)
	}
	waitHealth(t, c.nodes[v], c.nodes[v].info.HTTP, "/readyz", http.StatusServiceUnavailable, "membership: ha: this node was removed from the cluster")
	c.nodes[v].stop()
	c.nodes[v].launch()
	select {
	case <-c.nodes[v].exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("the removed node did not refuse to start:\n%s", c.nodes[v].log.String())
	}
	if code := c.nodes[v].cmd.ProcessState.ExitCode(); code == 0 {
		t.Fatalf("the removed node exited 0")
	}
	log := c.nodes[v].log.String()
	for _, want := range []string{"this node was removed from the cluster", "not " + nodeName(v), "tier0 token create --node " + nodeName(v)} {
		if !strings.Contains(log, want) {
			t.Fatalf("log lacks %q:\n%s", want, log)
		}
	}
	out = must(c.nodes[l].cli("cluster", "status"))
	if strings.Contains(out, nodeName(v)) || strings.Count(out, " yes ") != 2 {
		t.Fatalf("cluster status after the removal:\n%s", out)
	}
}
