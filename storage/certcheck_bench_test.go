package storage_test

import (
	"crypto/x509"
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

// BenchmarkCertParts: the parts of the per-record certificate check, one
// core: parsing the DER, and the ECDSA P-256 signature of the (already
// verified) issuer, the floor of a check that verifies every leaf.
func BenchmarkCertParts(b *testing.B) {
	k := storagetest.NewAuditKey(b)
	certs := make([]*x509.Certificate, 256)
	for i := range certs {
		r := storagetest.SVIDRecord(b, uint64(i+1), k.Root, k.RootKey, false)
		var err error
		if certs[i], err = x509.ParseCertificate(r.CertDER); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("parse", func(b *testing.B) {
		c0 := cpuTime()
		for i := 0; b.Loop(); i++ {
			if _, err := x509.ParseCertificate(certs[i%len(certs)].Raw); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(cpuTime()-c0)/1e3/float64(b.N), "cpu-µs/op")
	})
	b.Run("signature", func(b *testing.B) {
		c0 := cpuTime()
		for i := 0; b.Loop(); i++ {
			if err := certs[i%len(certs)].CheckSignatureFrom(k.Root); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(cpuTime()-c0)/1e3/float64(b.N), "cpu-µs/op")
	})
}
