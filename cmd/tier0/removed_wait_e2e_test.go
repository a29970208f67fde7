package main

import (
	"strings"
	"testing"
	"time"
)

// TestRemovedNodeNoMemberAnswers: a member removed while it was down that
// restarts when no other member answers (they are down too) cannot learn
// its removal; it stops waiting after --cluster-wait-timeout, exits
// non-zero and says what to do, instead of waiting forever.
func TestRemovedNodeNoMemberAnswers(t *testing.T) {
	c := startCluster(t, 3, "--cluster-wait-timeout", "3s")
	l := c.leader()
	down, other := (l+1)%3, (l+2)%3
	c.nodes[down].kill()
	must(c.nodes[l].cli("cluster", "remove", nodeName(down)))
	c.nodes[other].stop()
	c.nodes[l].stop()

	p := c.nodes[down]
	p.log = nil
	p.launch()
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("the removed node is still waiting:\n%s", p.log.String())
	}
	if code := p.cmd.ProcessState.ExitCode(); code == 0 {
		t.Fatal("exited 0")
	}
	log := p.log.String()
	for _, w := range []string{"cluster: no other member answers: none of the members in this node's raft configuration (",
		nodeName(l) + "=", nodeName(other) + "=", "has answered for 3s", "If they are down, start them",
		"tier0 token create --node " + nodeName(down), "--cluster-wait-timeout"} {
		if !strings.Contains(log, w) {
			t.Fatalf("log lacks %q:\n%s", w, log)
		}
	}
}
