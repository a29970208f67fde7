package storage_test

import (
	"testing"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

// BenchmarkCertCheck: the per-record certificate check every verify now
// does (parse, compare five columns, verify the issuer's ECDSA P-256
// signature).
func BenchmarkCertCheck(b *testing.B) {
	k := storagetest.NewAuditKey(b)
	recs := make([]*record.Record, 256)
	for i := range recs {
		recs[i] = storagetest.SVIDRecord(b, uint64(i+1), k.Root, k.RootKey, false)
	}
	c := storage.NewCertChecker(k.Roots(), nil)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if p, d := c.Check(recs[i%len(recs)]); p != "" {
			b.Fatal(d)
		}
	}
}

// BenchmarkCertCheckBatch: the same check as VerifyAuditWith runs it,
// 512 records at a time on every core; reports records/s.
func BenchmarkCertCheckBatch(b *testing.B) {
	k := storagetest.NewAuditKey(b)
	recs := make([]*record.Record, 512)
	for i := range recs {
		recs[i] = storagetest.SVIDRecord(b, uint64(i+1), k.Root, k.RootKey, false)
	}
	c := storage.NewCertChecker(k.Roots(), nil)
	b.ResetTimer()
	for b.Loop() {
		if seq, _, d := c.CheckBatch(recs); seq != 0 {
			b.Fatal(d)
		}
	}
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
}
