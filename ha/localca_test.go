package ha

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestLocalCAStateWithoutLeader: a member restarted alone (no leader, so
// raft applies nothing past its snapshot, and it took none) still finds
// the CA roots in its own log: the active root after an activation, the
// previous one retired.
func TestLocalCAStateWithoutLeader(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	nodes := startCluster(t, 3, clock)
	l := leaderOf(t, nodes)
	root := func(id, state string) CARoot {
		return CARoot{ID: id, State: state, KeyURI: "soft:/k/" + id, CertDER: []byte("cert-" + id), NotAfter: clock.Now().Add(24 * time.Hour)}
	}
	if _, err := l.AddCARoot(ctx, "example.org", root("a", RootActive)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddCARoot(ctx, "example.org", root("b", RootPrepared)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ActivateCARoot(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, l, nodes)
	dir := nodes[1].cfg.DataDir
	for _, n := range nodes {
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}

	_, trans := raft.NewInmemTransport("alone")
	n, err := New(ctx, Config{NodeID: "n2", DataDir: dir, Transport: trans, Logger: testLogger(t), Clock: clock.Now, tune: fastRaft})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	if got := n.CAState(); len(got.Roots) != 0 {
		t.Fatalf("the FSM already holds roots without a leader (%v): the test shows nothing", got.Roots)
	}
	got, err := n.LocalCAState()
	if err != nil {
		t.Fatal(err)
	}
	act, ok := got.Active()
	if !ok || act.ID != "b" || act.KeyURI != "soft:/k/b" || len(got.Roots) != 2 || got.Roots[0].State != RootRetired {
		t.Fatalf("local CA state %+v", got)
	}
}
