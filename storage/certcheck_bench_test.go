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
