package ha

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tier0-ca/tier0/ca/record"
)

// startCluster starts size nodes on connected in-memory transports: n1
// bootstraps alone, the others join with AddVoter (the path the membership
// commands will take).
func startCluster(t *testing.T, size int, clock *testClock) []*Node {
	t.Helper()
	trans := make([]*raft.InmemTransport, size)
	for i := range trans {
		_, trans[i] = raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("addr%d", i+1)))
	}
	for i := range trans {
		for j := range trans {
			if i != j {
				trans[i].Connect(trans[j].LocalAddr(), trans[j])
			}
		}
	}
	nodes := make([]*Node, size)
	for i := range nodes {
		cfg := Config{
			NodeID: fmt.Sprintf("n%d", i+1), DataDir: t.TempDir(), Transport: trans[i],
			Bootstrap: i == 0, Logger: testLogger(t), Clock: clock.Now, tune: fastRaft,
		}
		n, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatalf("New %s: %v", cfg.NodeID, err)
		}
		t.Cleanup(func() { _ = n.Close() })
		nodes[i] = n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := nodes[0].WaitLeader(ctx); err != nil {
		t.Fatalf("WaitLeader: %v", err)
	}
	for i, n := range nodes[1:] {
		if err := nodes[0].raft.AddVoter(raft.ServerID(n.cfg.NodeID), trans[i+1].LocalAddr(), 0, 5*time.Second).Error(); err != nil {
			t.Fatalf("AddVoter: %v", err)
		}
	}
	for _, n := range nodes {
		if err := n.WaitLeader(ctx); err != nil {
			t.Fatalf("WaitLeader %s: %v", n.cfg.NodeID, err)
		}
	}
	return nodes
}

func leaderOf(t *testing.T, nodes []*Node) *Node {
	t.Helper()
	var leader *Node
	waitFor(t, "a leader", func() bool {
		for _, n := range nodes {
			if n.isLeader() {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

// waitConverged waits until every node has applied the leader's last index
// and checks their states are byte-identical.
func waitConverged(t *testing.T, leader *Node, nodes []*Node) {
	t.Helper()
	if err := leader.raft.Barrier(5 * time.Second).Error(); err != nil {
		t.Fatalf("Barrier: %v", err)
	}
	last := leader.raft.AppliedIndex()
	for _, n := range nodes {
		waitFor(t, n.cfg.NodeID+" to apply", func() bool { return n.raft.AppliedIndex() >= last })
	}
	want := stateDump(t, leader.fsm)
	for _, n := range nodes {
		if got := stateDump(t, n.fsm); !bytes.Equal(got, want) {
			t.Fatalf("%s state differs from leader %s", n.cfg.NodeID, leader.cfg.NodeID)
		}
	}
}

func TestClusterReplicatesIdentically(t *testing.T) {
	clock := newTestClock()
	nodes := startCluster(t, 3, clock)
	leader := leaderOf(t, nodes)
	ctx := context.Background()

	st := leader.Status()
	if len(st.Servers) != 3 || st.Leader != leader.cfg.NodeID {
		t.Fatalf("status %+v", st)
	}
	populate(t, leader, clock)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if err := leader.Commit(ctx, []*record.Record{testRecord("c")}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Commit: %v", err)
	}
	waitConverged(t, leader, nodes)
	if js := nodes[2].JournalStatus(); certCount(nodes[2]) != 210 {
		t.Fatalf("follower journal %+v", js)
	}

	// Writes on a follower are refused (forwarding comes later).
	var follower *Node
	for _, n := range nodes {
		if n != leader {
			follower = n
		}
	}
	if err := follower.Commit(ctx, []*record.Record{testRecord("f")}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("follower Commit: %v, want ErrNotLeader", err)
	}
	if _, err := follower.CreateEntry(ctx, Entry{Agent: "a", SPIFFEID: "spiffe://x/f"}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("follower CreateEntry: %v, want ErrNotLeader", err)
	}

	// Failover: the chain continues on the new leader.
	js0 := leader.JournalStatus()
	head := js0.Head
	if err := leader.Close(); err != nil {
		t.Fatal(err)
	}
	var rest []*Node
	for _, n := range nodes {
		if n != leader {
			rest = append(rest, n)
		}
	}
	leader2 := leaderOf(t, rest)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := leader2.WaitLeader(wctx); err != nil {
		t.Fatal(err)
	}
	next := []*record.Record{testRecord("after-failover")}
	if err := leader2.Commit(ctx, next); err != nil {
		t.Fatalf("Commit on new leader: %v", err)
	}
	verifyChain(t, next, js0.Seq+1, head)
	waitConverged(t, leader2, rest)
}
