package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/internal/drill"
)

// TestClusterTransferUnderLoadLosesNothing: a three-node cluster of
// separate processes issues continuously through all nodes while
// leadership is handed over twice with `cluster transfer-leadership` and
// once by `drill failover` (without --kill-local). No item fails, every
// SVID received has exactly one record, and the drill's own probes saw no
// failure.
func TestClusterTransferUnderLoadLosesNothing(t *testing.T) {
	c := startCluster(t, 3)
	ag := c.agent("a1", clusterID)
	is := startIssuing(t, ag, c.nodes[0].bundle(), clusterID, 4)
	pollUntil(t, 60*time.Second, func() bool { return is.count.Load() >= 100 })

	for round := range 2 {
		l := c.leader()
		to := (l + 1) % 3
		must(c.nodes[l].cli("cluster", "transfer-leadership", "--to", nodeName(to)))
		pollUntil(t, 60*time.Second, func() bool { return c.leader() == to })
		before := is.count.Load()
		pollUntil(t, 60*time.Second, func() bool { return is.count.Load() >= before+100 })
		t.Logf("round %d: leadership %s -> %s under load", round, nodeName(l), nodeName(to))
	}
	out, err := c.nodes[0].cli("drill", "failover", "--cluster", strings.Join(c.apis, ","), "-o", "json", "--after", "1s")
	var d drill.FailoverReport
	if jerr := json.Unmarshal([]byte(out), &d); jerr != nil || err != nil {
		t.Fatalf("drill failover: %v\n%s", err, out)
	}
	if !d.OK || d.Failed != 0 || d.RecordsLost != 0 || d.LeaderAfter == d.LeaderBefore {
		t.Fatalf("drill failover under load: %+v", d)
	}
	before := is.count.Load()
	pollUntil(t, 60*time.Second, func() bool { return is.count.Load() >= before+100 })
	is.stop()
	t.Logf("%d SVIDs received, %d failed attempts %v; drill: %d probes, %d failed",
		is.count.Load(), is.failures.Load(), is.codeSummary(), d.Requests, d.Failed)
	if f := is.failures.Load(); f != 0 {
		t.Errorf("%d mint attempts failed across planned leadership transfers: %v", f, is.codeSummary())
	}
	c.checkRecords(is)
}
