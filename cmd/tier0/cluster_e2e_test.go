package main

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

const clusterID = "spiffe://example.org/web"

// TestClusterSIGKILLLeader kills the leader with SIGKILL during continuous
// issuance through all three nodes: issuance resumes on the survivors,
// every SVID a client received has exactly one record, the chain verifies
// and no serial repeats.
func TestClusterSIGKILLLeader(t *testing.T) {
	c := startCluster(t, 3)
	ag := c.agent("a1", clusterID)
	is := startIssuing(t, ag, c.nodes[0].bundle(), clusterID, 4)
	pollUntil(t, 60*time.Second, func() bool { return is.count.Load() >= 100 })

	l := c.leader()
	killed := time.Now()
	c.nodes[l].kill()
	before := is.count.Load()
	pollUntil(t, 60*time.Second, func() bool { return is.count.Load() >= before+100 })
	gap := is.firstAfter(killed).Sub(killed)
	is.stop()
	t.Logf("killed leader %s; first SVID after %v; %d received, %d failed attempts %v",
		nodeName(l), gap.Round(time.Millisecond), is.count.Load(), is.failures.Load(), is.codeSummary())
	if nl := c.leader(); nl == l {
		t.Fatalf("the killed node is still the leader")
	}
	c.checkRecords(is)
}

// TestClusterFollowerCatchUp kills a follower, issues until the leader has
// snapshotted and compacted its log past the follower's last entry,
// restarts the follower and checks it catches up from an InstallSnapshot
// (the log entries it lacks no longer exist on the leader).
func TestClusterFollowerCatchUp(t *testing.T) {
	c := startCluster(t, 3, "--raft-snapshot-threshold", "20", "--raft-trailing-logs", "10", "--raft-snapshot-interval", "1s")
	l := c.leader()
	f := (l + 1) % 3
	var addrs []string
	for i, a := range c.apis {
		if i != f {
			addrs = append(addrs, a)
		}
	}
	ag := c.agent("a1", clusterID, addrs...)
	// The follower has replicated the agent's entry and token; nothing
	// writes while it is read and killed (its last index cannot grow).
	want0 := metricInt(t, c.nodes[l], "tier0_raft_log_last_index")
	pollUntil(t, 30*time.Second, func() bool { return metricInt(t, c.nodes[f], "tier0_raft_log_last_index") >= want0 })
	fLast := metricInt(t, c.nodes[f], "tier0_raft_log_last_index")
	if n := metricInt(t, c.nodes[f], "tier0_raft_snapshots_installed_total"); n != 0 {
		t.Fatalf("follower installed %d snapshots before the test", n)
	}
	c.nodes[f].kill()
	is := startIssuing(t, ag, c.nodes[l].bundle(), clusterID, 2)
	pollUntil(t, 60*time.Second, func() bool { return is.count.Load() >= 300 })
	// Compaction runs every --raft-snapshot-interval; wait until the leader's
	// log starts beyond the follower's next entry.
	var lFirst int64
	pollUntil(t, 60*time.Second, func() bool {
		lFirst = metricInt(t, c.nodes[l], "tier0_raft_log_first_index")
		return lFirst > fLast+1
	})
	is.stop()
	want := metricInt(t, c.nodes[l], "tier0_journal_seq")

	c.nodes[f].start()
	pollUntil(t, 60*time.Second, func() bool { return metricInt(t, c.nodes[f], "tier0_journal_seq") >= want })
	installed := metricInt(t, c.nodes[f], "tier0_raft_snapshots_installed_total")
	if installed < 1 || !strings.Contains(c.nodes[f].log.String(), "Installed remote snapshot") {
		t.Fatalf("follower %s (last index %d) caught up without installing a snapshot (installed %d); leader's first index %d",
			nodeName(f), fLast, installed, lFirst)
	}
	t.Logf("follower %s (last index %d) caught up to journal seq %d from %d snapshot(s); leader's log started at %d",
		nodeName(f), fLast, want, installed, lFirst)
	c.checkRecords(is)
}

// TestClusterMinorityPartition freezes the leader (SIGSTOP): it cannot
// acknowledge anything alone, the other two elect a leader and keep
// issuing; after SIGCONT the old leader rejoins as a follower and catches up.
func TestClusterMinorityPartition(t *testing.T) {
	c := startCluster(t, 3)
	l := c.leader()
	var rest []string
	for i, a := range c.apis {
		if i != l {
			rest = append(rest, a)
		}
	}
	ag := c.agent("a1", clusterID, rest...)
	onlyOld := c.agent("a2", clusterID, c.apis[l])
	c.nodes[l].signal(syscall.SIGSTOP)
	stopped := true
	defer func() {
		if stopped {
			c.nodes[l].signal(syscall.SIGCONT)
		}
	}()
	// The frozen leader answers nothing.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := onlyOld.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: csrFor(t, p256(t), []string{clusterID}, nil, nil)}}})
	cancel()
	if err == nil {
		t.Fatal("a frozen leader acknowledged an issuance")
	}
	is := startIssuing(t, ag, c.nodes[l].bundle(), clusterID, 2)
	pollUntil(t, 60*time.Second, func() bool { return is.count.Load() >= 100 })
	is.stop()
	nl := c.leader((l+1)%3, (l+2)%3)
	if nl == l {
		t.Fatalf("the majority did not elect a new leader")
	}
	c.nodes[l].signal(syscall.SIGCONT)
	stopped = false
	want := metricInt(t, c.nodes[nl], "tier0_journal_seq")
	pollUntil(t, 60*time.Second, func() bool { return metricInt(t, c.nodes[l], "tier0_journal_seq") >= want })
	c.checkRecords(is)
}

// TestClusterLoseQuorum kills two of three nodes: the survivor refuses
// issuance with a clear Unavailable and records nothing; after the two
// restart, issuance resumes.
func TestClusterLoseQuorum(t *testing.T) {
	c := startCluster(t, 3, "--raft-apply-timeout", "2s")
	l := c.leader()
	s := (l + 1) % 3 // the survivor: a follower
	ag := c.agent("a1", clusterID, c.apis[s])
	is := startIssuing(t, ag, c.nodes[s].bundle(), clusterID, 1)
	pollUntil(t, 60*time.Second, func() bool { return is.count.Load() >= 20 })
	is.stop()
	// Let the survivor apply everything committed before the kill.
	pollUntil(t, 30*time.Second, func() bool {
		return metricInt(t, c.nodes[s], "tier0_journal_seq") == metricInt(t, c.nodes[l], "tier0_journal_seq")
	})
	seq := metricInt(t, c.nodes[s], "tier0_journal_seq")

	down := []int{l, (l + 2) % 3}
	for _, i := range down {
		c.nodes[i].kill()
	}
	for attempt := 0; attempt < 3; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := ag.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: csrFor(t, p256(t), []string{clusterID}, nil, nil)}}})
		cancel()
		code := status.Code(err)
		if err == nil {
			if e := resp.GetResults()[0].GetError(); e != nil {
				code = codes.Code(e.GetCode())
			} else {
				t.Fatal("issued without quorum")
			}
		}
		if code != codes.Unavailable {
			t.Fatalf("without quorum: got %v (%v), want Unavailable", code, err)
		}
	}
	if got := metricInt(t, c.nodes[s], "tier0_journal_seq"); got != seq {
		t.Fatalf("journal seq moved without quorum: %d -> %d", seq, got)
	}
	for _, i := range down {
		c.nodes[i].launch()
	}
	for _, i := range down {
		c.nodes[i].waitReady(c.nodes[i].exited)
	}
	is2 := startIssuing(t, ag, c.nodes[s].bundle(), clusterID, 1)
	pollUntil(t, 60*time.Second, func() bool { return is2.count.Load() >= 20 })
	is2.stop()
	for k, v := range is2.received {
		is.received[k] = v
	}
	c.checkRecords(is)
}

// TestClusterRestartAll stops every node and starts them again: entries,
// bundle and journal survive, and issuance continues the same chain.
func TestClusterRestartAll(t *testing.T) {
	c := startCluster(t, 3)
	ag := c.agent("a1", clusterID)
	is := startIssuing(t, ag, c.nodes[0].bundle(), clusterID, 2)
	pollUntil(t, 60*time.Second, func() bool { return is.count.Load() >= 50 })
	is.stop()
	bundleBefore := must(ag.Agent().GetBundle(context.Background(), &tier0v1.GetBundleRequest{}))
	entriesBefore := must(c.nodes[c.leader()].cli("entry", "list", "-o", "json"))
	seq := metricInt(t, c.nodes[c.leader()], "tier0_journal_seq")

	for _, p := range c.nodes {
		p.stop()
	}
	for _, p := range c.nodes {
		p.launch()
	}
	for _, p := range c.nodes {
		p.waitReady(p.exited)
	}
	l := c.leader()
	if got := metricInt(t, c.nodes[l], "tier0_journal_seq"); got < seq {
		t.Fatalf("journal seq after restart %d < %d", got, seq)
	}
	if got := must(c.nodes[l].cli("entry", "list", "-o", "json")); got != entriesBefore {
		t.Fatalf("entries changed across restart:\n%s\nvs\n%s", entriesBefore, got)
	}
	bundleAfter := must(ag.Agent().GetBundle(context.Background(), &tier0v1.GetBundleRequest{}))
	if bundleAfter.GetSequence() != bundleBefore.GetSequence() || !slices.EqualFunc(bundleAfter.GetX509Authorities(), bundleBefore.GetX509Authorities(), func(a, b []byte) bool { return string(a) == string(b) }) {
		t.Fatalf("bundle changed across restart")
	}
	is2 := startIssuing(t, ag, c.nodes[0].bundle(), clusterID, 2)
	pollUntil(t, 60*time.Second, func() bool { return is2.count.Load() >= 50 })
	is2.stop()
	for k, v := range is2.received {
		is.received[k] = v
	}
	c.checkRecords(is)
	out := must(c.nodes[l].cli("cluster", "status"))
	for i := range c.nodes {
		if !strings.Contains(out, nodeName(i)) {
			t.Fatalf("cluster status lacks %s:\n%s", nodeName(i), out)
		}
	}
}

// metricInt reads an unlabelled gauge or counter from a node's /metrics.
func metricInt(t *testing.T, p *proc, name string) int64 {
	t.Helper()
	for _, l := range strings.Split(metric(t, p, name), "\n") {
		fs := strings.Fields(l)
		if len(fs) == 2 && fs[0] == name {
			if f, err := strconv.ParseFloat(fs[1], 64); err == nil {
				return int64(f)
			}
		}
	}
	return -1
}
