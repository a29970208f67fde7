package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

// BenchmarkAppendBatchSizes measures export throughput (rows/s) by batch size.
func BenchmarkAppendBatchSizes(b *testing.B) {
	for _, batch := range []int{1000, 5000, 20000} {
		b.Run(fmt.Sprint(batch), func(b *testing.B) {
			ctx := context.Background()
			s, _, _ := open(b)
			recs := storagetest.Chain("bs", 1, batch*b.N, record.Genesis)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if err := s.Append(ctx, recs[i*batch:(i+1)*batch]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "rows/s")
		})
	}
}

// BenchmarkAuditMillion loads 1M records with a checkpoint every 1000, then
// measures query latency for one SPIFFE ID and VerifyAudit throughput.
func BenchmarkAuditMillion(b *testing.B) {
	const n, batch = 1_000_000, 20000
	ctx := context.Background()
	s, _, _ := open(b)
	k := storagetest.NewAuditKey(b)
	prev := record.Genesis
	load := time.Now()
	for i := 1; i <= n; i += batch {
		recs := storagetest.Chain("m", uint64(i), batch, prev)
		prev = recs[batch-1].Hash
		if err := s.Append(ctx, recs); err != nil {
			b.Fatal(err)
		}
		var cps []record.Checkpoint
		for j := 999; j < batch; j += 1000 {
			cps = append(cps, k.Checkpoint(b, recs[j]))
		}
		if err := s.AppendCheckpoints(ctx, cps); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("loaded %d records in %v (%.0f rows/s)", n, time.Since(load), n/time.Since(load).Seconds())
	b.Run("QueryBySPIFFEID", func(b *testing.B) {
		f := storage.Filter{SPIFFEID: storagetest.SPIFFEIDs[2], Limit: 100}
		for i := 0; i < b.N; i++ {
			if got, err := s.Query(ctx, f); err != nil || len(got) != 100 {
				b.Fatalf("Query = %d, %v", len(got), err)
			}
		}
	})
	b.Run("QueryBySPIFFEIDAndTime", func(b *testing.B) {
		f := storage.Filter{SPIFFEID: storagetest.SPIFFEIDs[1], Since: storagetest.Base.Add(100000 * time.Minute),
			Until: storagetest.Base.Add(100600 * time.Minute), Limit: 1000}
		for i := 0; i < b.N; i++ {
			if got, err := s.Query(ctx, f); err != nil || len(got) == 0 {
				b.Fatalf("Query = %d, %v", len(got), err)
			}
		}
	})
	b.Run("VerifyAudit", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			start := time.Now()
			res, err := storage.VerifyAudit(ctx, s, 0, 0, k.Roots())
			if err != nil || !res.OK() || res.Checked != n || res.Checkpoints != n/1000 {
				b.Fatalf("VerifyAudit = %+v, %v", res, err)
			}
			b.ReportMetric(n/time.Since(start).Seconds(), "records/s")
		}
	})
}
