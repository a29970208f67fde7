package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

const benchBatch = 5000

// BenchmarkAppendPostgres appends batches of 5000 records (one
// transaction each, COPY + INSERT ... SELECT) and reports rows/s.
func BenchmarkAppendPostgres(b *testing.B) {
	ctx := context.Background()
	s, _, _ := open(b)
	prev, next := record.Genesis, uint64(1)
	var spent time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		recs := storagetest.Chain("bench", next, benchBatch, prev)
		prev, next = recs[benchBatch-1].Hash, next+benchBatch
		b.StartTimer()
		start := time.Now()
		if err := s.Append(ctx, recs); err != nil {
			b.Fatal(err)
		}
		spent += time.Since(start)
	}
	b.ReportMetric(float64(b.N*benchBatch)/spent.Seconds(), "rows/s")
}

// BenchmarkQueryBySPIFFEID queries the 100 newest records of one SPIFFE ID
// in a 200k-record table (40k records per ID).
func BenchmarkQueryBySPIFFEID(b *testing.B) {
	ctx := context.Background()
	s, _, _ := open(b)
	storagetest.Append(b, s, storagetest.Chain("q", 1, 200000, record.Genesis), 10000)
	f := storage.Filter{SPIFFEID: storagetest.SPIFFEIDs[3], Limit: 100}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got, err := s.Query(ctx, f)
		if err != nil || len(got) != 100 {
			b.Fatalf("Query = %d records, %v", len(got), err)
		}
	}
}
