package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tier0-ca/tier0/internal/drill"
)

// TestDrillRestoreCluster: `tier0 drill restore` against a 3-node cluster:
// the scratch node has the same bundle, entries and chain head and issues a
// probe SVID that verifies against the cluster's bundle.
func TestDrillRestoreCluster(t *testing.T) {
	c := startCluster(t, 3)
	first := c.nodes[0]
	for _, id := range []string{"spiffe://example.org/a", "spiffe://example.org/b"} {
		must(first.cli("entry", "create", "--agent", "h1", "--spiffe-id", id, "--server", strings.Join(c.apis, ",")))
	}
	out, err := first.cli("drill", "restore", "-o", "json", "--server", strings.Join(c.apis, ","))
	var d drill.RestoreReport
	if jerr := json.Unmarshal([]byte(out), &d); jerr != nil || err != nil {
		t.Fatalf("drill restore: %v\n%s", err, out)
	}
	names := map[string]bool{}
	for _, ch := range d.Checks {
		if !ch.OK {
			t.Errorf("check %s failed: %s", ch.Name, ch.Detail)
		}
		names[ch.Name] = true
	}
	for _, want := range []string{"probe", "journal head", "bundle", "entries", "chain"} {
		if !names[want] {
			t.Errorf("check %q missing from %+v", want, d.Checks)
		}
	}
	if !d.OK || d.RPO.JournalSeq == 0 || d.ProbeSeq <= d.RPO.JournalSeq || d.RTOSeconds <= 0 {
		t.Fatalf("report %+v", d)
	}
}

// TestDrillFailover: probes keep flowing while leadership is transferred,
// then while the leader is SIGKILLed; every SVID received has its record.
func TestDrillFailover(t *testing.T) {
	c := startCluster(t, 3)
	first := c.nodes[0]
	var dirs []string
	for _, p := range c.nodes {
		dirs = append(dirs, p.dataDir)
	}
	cluster := strings.Join(c.apis, ",")
	for _, args := range [][]string{
		{"drill", "failover", "--cluster", cluster, "-o", "json", "--after", "1s"},
		{"drill", "failover", "--cluster", cluster, "-o", "json", "--after", "1s", "--kill-local", "--node-dirs", strings.Join(dirs, ",")},
	} {
		out, err := first.cli(args...)
		var d drill.FailoverReport
		if jerr := json.Unmarshal([]byte(out), &d); jerr != nil || err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		if !d.OK || d.RecordsLost != 0 || d.Received == 0 || d.LeaderAfter == "" || d.LeaderAfter == d.LeaderBefore {
			t.Fatalf("%v: report %+v", args, d)
		}
		t.Logf("%s: new leader %.2fs, first good %.2fs, %d requests, %d failed, %d received, 0 lost",
			d.Method, d.NewLeaderSeconds, d.FirstGoodSeconds, d.Requests, d.Failed, d.Received)
	}
}

// TestDrillUnreachableCluster: a clear error and no changes.
func TestDrillUnreachableCluster(t *testing.T) {
	srv := startServer(t, t.TempDir())
	before := must(srv.cli("entry", "list", "-o", "json"))
	_, err := srv.cli("drill", "failover", "--cluster", "127.0.0.1:1,127.0.0.1:2")
	if err == nil || !strings.Contains(err.Error(), "cluster unreachable or without a leader, nothing changed") || !strings.Contains(err.Error(), "127.0.0.1:2") {
		t.Fatalf("err = %v", err)
	}
	if after := must(srv.cli("entry", "list", "-o", "json")); after != before {
		t.Fatalf("entries changed:\n%s\n%s", before, after)
	}
}
