package ha

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tier0-ca/tier0/ca/record"
)

// TestTransferLeadershipLosesNothing: commits run on every node of a
// three-node mTLS cluster (locally on the leader, forwarded on the
// followers) while leadership is handed over three times. No commit
// fails, and the journal holds exactly the records whose commits
// succeeded (nothing answered as failed was committed, nothing twice).
func TestTransferLeadershipLosesNothing(t *testing.T) {
	nodes, _, _, _ := startTLSCluster(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := nodes[w%3]
			for ctx.Err() == nil {
				recs := []*record.Record{testRecord("t"), testRecord("t")}
				if err := n.CommitKeyed(context.Background(), recs, []uint64{uint64(w)<<32 | uint64(ok.Load()+1), 0}); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				ok.Add(2)
			}
		}()
	}
	for round := range 3 {
		before := ok.Load()
		waitFor(t, "commits before the transfer", func() bool { return ok.Load() >= before+50 })
		l := leaderOf(t, nodes)
		if err := l.TransferLeadership(context.Background(), ""); err != nil {
			t.Fatalf("round %d: transfer: %v", round, err)
		}
		waitFor(t, "a new leader", func() bool { return !l.isLeader() && leaderOf(t, nodes) != l })
		t.Logf("round %d: leadership moved from %s to %s", round, l.cfg.NodeID, leaderOf(t, nodes).cfg.NodeID)
	}
	after := ok.Load()
	waitFor(t, "commits after the last transfer", func() bool { return ok.Load() >= after+50 })
	cancel()
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d commits failed across leadership transfers; first: %v", f, firstErr.Load())
	}
	l := leaderOf(t, nodes)
	if seq := certCount(l); seq != uint64(ok.Load()) {
		t.Fatalf("journal holds %d records, %d were committed successfully", seq, ok.Load())
	}
	verifyChain(t, l.Tail(0, 1<<20), 1, record.Genesis)
	var reroutes float64
	for _, n := range nodes {
		reroutes += metricValue(t, n.m.reroutes)
	}
	t.Logf("%d records committed, %v batches rerouted", ok.Load(), reroutes)
}
