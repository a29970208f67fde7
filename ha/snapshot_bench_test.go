package ha

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkSnapshotLockHold measures, for a state of 200,000 registration
// entries, the part of a raft snapshot that holds the FSM's read lock
// (and so stalls every Apply: commits wait) and the part that runs
// concurrently in Persist (sorting and encoding).
func BenchmarkSnapshotLockHold(b *testing.B) {
	const n = 200_000
	f := newFSM(nil, newMetrics(prometheus.NewRegistry()))
	now := time.Now()
	for i := range n {
		f.s.putEntry(Entry{ID: fmt.Sprintf("%016x", uint64(i)*0x9e3779b97f4a7c15), Agent: fmt.Sprintf("agent-%d", i%1000),
			SPIFFEID: fmt.Sprintf("spiffe://example.org/a%d/w%d", i%1000, i/1000), TTL: time.Hour, CreatedAt: now})
	}
	b.Run("locked", func(b *testing.B) {
		for b.Loop() {
			_ = f.snapshot()
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms-locked/op")
	})
	b.Run("persist", func(b *testing.B) {
		for b.Loop() {
			if err := f.snapshot().write(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
}
