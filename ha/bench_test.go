package ha

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
)

// BenchmarkCommit measures single-node journal throughput with about 50
// concurrent committers of one ~600-byte record each (real raft-wal fsync).
func BenchmarkCommit(b *testing.B) {
	n := startNode(b, b.TempDir(), newTestClock())
	ctx := context.Background()
	der := make([]byte, 600)
	first := n.raft.LastIndex()
	b.SetParallelism(max(1, 50/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := testRecord("bench")
			r.CertDER = der
			if err := n.Commit(ctx, []*record.Record{r}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "commits/s")
	if entries := n.raft.LastIndex() - first; entries > 0 {
		b.ReportMetric(float64(b.N)/float64(entries), "records/entry")
	}
}
