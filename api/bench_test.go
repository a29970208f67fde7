package api

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/roles"
)

// BenchmarkMintThroughAPI measures SVIDs/s end to end in one process: mTLS
// gRPC, authorization, CSR checks, signing with the soft key, group commit
// to the one-node Raft journal (fsync), and the response. The client runs
// on the same cores. Reported: svids/s, allocs/svid and B/svid (whole
// process, both ends of the call); CPU-ns per SVID is ns/op divided by the
// batch size.
func BenchmarkMintThroughAPI(b *testing.B) {
	for _, batch := range []int{1, 32} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			f := newFixture(b)
			f.grant(b, "a1", "spiffe://example.org/web")
			agentID, _ := roles.AgentID(testTD, "a1")
			c := f.clientAs(b, agentID)
			benchMint(b, c, batch)
		})
	}
}

// benchMint runs MintX509SVIDs calls of batch items from 16 x GOMAXPROCS
// goroutines and reports SVIDs/s.
func benchMint(b *testing.B, c *client.Client, batch int) {
	b.Helper()
	csr, _, err := client.NewCSR(spiffeid.RequireFromString("spiffe://example.org/web"))
	if err != nil {
		b.Fatal(err)
	}
	items := make([]*tier0v1.MintItem, batch)
	for i := range items {
		items[i] = &tier0v1.MintItem{Csr: csr}
	}
	req := &tier0v1.MintX509SVIDsRequest{Items: items}
	b.SetParallelism(16) // 16 x GOMAXPROCS concurrent calls
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Agent().MintX509SVIDs(context.Background(), req)
			if err != nil {
				b.Error(err)
				return
			}
			if e := resp.GetResults()[0].GetError(); e != nil {
				b.Error(e)
				return
			}
		}
	})
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "svids/s")
	// Client and server share the process: this counts both sides of the
	// call (TLS, gRPC, protobuf) plus the server's background work
	// (journal, raft) during the run, per SVID.
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N*batch), "allocs/svid")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N*batch), "B/svid")
}
