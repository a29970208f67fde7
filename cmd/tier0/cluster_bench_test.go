package main

import (
	"context"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// TestClusterBenchmark measures a 3-node cluster against a single node in
// the same run, and the failover gap after SIGKILL of the leader (median
// of 5). `make bench-cluster` runs it at full size (TIER0_CLUSTER_BENCH=1,
// docs/BENCHMARKS.md); in `make test` it runs as a short smoke that checks
// both set-ups issue and the cluster recovers from a leader kill.
func TestClusterBenchmark(t *testing.T) {
	workers, dur, reps := 8, time.Second, 1
	if os.Getenv("TIER0_CLUSTER_BENCH") != "" {
		workers, dur, reps = 32, 10*time.Second, 5
	}
	single := startServer(t, t.TempDir())
	sc := agentClient(t, single, "bench", clusterID)
	sRate, sP50, sP99 := measure(t, sc, workers, dur)
	single.stop()
	t.Logf("single node: %.0f SVIDs/s, p50 %v, p99 %v", sRate, sP50, sP99)

	c := startCluster(t, 3)
	cc := c.agent("bench", clusterID)
	cRate, cP50, cP99 := measure(t, cc, workers, dur)
	t.Logf("3-node cluster: %.0f SVIDs/s (%.0f%% of single), p50 %v, p99 %v", cRate, 100*cRate/sRate, cP50, cP99)

	var gaps []time.Duration
	for range reps {
		is := startIssuing(t, cc, c.nodes[0].bundle(), clusterID, 4)
		pollUntil(t, 60*time.Second, func() bool { return is.count.Load() >= 50 })
		l := c.leader()
		killed := time.Now()
		c.nodes[l].kill()
		pollUntil(t, 60*time.Second, func() bool { return !is.firstAfter(killed).IsZero() })
		gaps = append(gaps, is.firstAfter(killed).Sub(killed))
		is.stop()
		c.nodes[l].start()
	}
	slices.Sort(gaps)
	t.Logf("failover gaps (SIGKILL leader -> first SVID): %v, median %v", gaps, gaps[len(gaps)/2])
}

// measure runs closed-loop workers minting one SVID per call for d.
func measure(t *testing.T, c *client.Client, workers int, d time.Duration) (rate float64, p50, p99 time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			csr := csrFor(t, p256(t), []string{clusterID}, nil, nil)
			var mine []time.Duration
			for ctx.Err() == nil {
				start := time.Now()
				resp, err := c.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: csr}}})
				if err != nil || resp.GetResults()[0].GetError() != nil {
					continue
				}
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	if len(lat) == 0 {
		t.Fatal("nothing issued")
	}
	return float64(len(lat)) / d.Seconds(), lat[len(lat)/2], lat[len(lat)*99/100]
}
