package storage_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
	"github.com/tier0-ca/tier0/storage/sqlite"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

// memLog is an in-memory storage.AuditReader: verify's cost without a
// database's.
type memLog struct {
	recs []*record.Record // seq i+1 at i
	cps  []record.Checkpoint
}

func (m *memLog) Range(ctx context.Context, from, to uint64, fn func(*record.Record) error) error {
	if to == 0 || to > uint64(len(m.recs)) {
		to = uint64(len(m.recs))
	}
	for s := max(from, 1); s <= to; s++ {
		if err := fn(m.recs[s-1]); err != nil {
			return err
		}
	}
	return ctx.Err()
}
func (m *memLog) LastSeq(context.Context) (uint64, error)  { return uint64(len(m.recs)), nil }
func (m *memLog) FirstSeq(context.Context) (uint64, error) { return min(1, uint64(len(m.recs))), nil }
func (m *memLog) Checkpoints(_ context.Context, from, to uint64) ([]record.Checkpoint, error) {
	var out []record.Checkpoint
	for _, c := range m.cps {
		if c.Seq >= from && (to == 0 || c.Seq <= to) {
			out = append(out, c)
		}
	}
	return out, nil
}
func (m *memLog) Lineage(context.Context) (record.Lineage, bool, error) {
	return record.Lineage{}, false, nil
}

// syntheticLog returns n sealed records of real X.509-SVIDs signed by k's
// root (distinct certificates, cycled when n > distinct: verify caches
// nothing per certificate) with a signed checkpoint every 1000 records.
func syntheticLog(b testing.TB, k *storagetest.AuditKey, n, distinct int) *memLog {
	b.Helper()
	certs := make([]*record.Record, min(n, distinct))
	for i := range certs {
		certs[i] = storagetest.SVIDRecord(b, uint64(i+1), k.Root, k.RootKey, false)
	}
	m := &memLog{recs: make([]*record.Record, n)}
	prev, cp := record.Genesis, uint64(0)
	for i := range m.recs {
		r := *certs[i%len(certs)]
		r.Seq = uint64(i + 1)
		prev = r.Seal(prev)
		m.recs[i] = &r
		if r.Seq%1000 == 0 || i == n-1 {
			m.cps = append(m.cps, k.CheckpointAfter(b, &r, cp))
			cp = r.Seq
		}
	}
	return m
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkVerifyAudit: VerifyAuditWith over 20,000 records of real
// X.509-SVIDs, the hash chain and 20 signed checkpoints alone ("chain")
// and with every record's certificate checked against its columns and the
// bundle ("certs", what every verify does), read from memory ("mem": no
// database) and from a SQLite store ("sqlite"). Reports records/s (wall)
// and CPU µs per record (this process, all cores, from getrusage: the
// figure that stays comparable on a loaded machine).
func BenchmarkVerifyAudit(b *testing.B) {
	const n = 20000
	k := storagetest.NewAuditKey(b)
	mem := syntheticLog(b, k, n, n) // distinct certificates: the store refuses a serial twice
	db, err := sqlite.New(context.Background(), sqlite.Config{Path: b.TempDir() + "/r.db"})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	storagetest.Append(b, db, mem.recs, 1000)
	if err := db.AppendCheckpoints(context.Background(), mem.cps); err != nil {
		b.Fatal(err)
	}
	for _, src := range []struct {
		name string
		s    storage.AuditReader
	}{{"mem", mem}, {"sqlite", db}} {
		for _, certs := range []bool{false, true} {
			name := map[bool]string{false: "chain", true: "certs"}[certs]
			b.Run(fmt.Sprintf("%s/%s/n=%d", src.name, name, n), func(b *testing.B) {
				ctx := context.Background()
				c0 := cpuTime()
				for b.Loop() {
					o := storage.AuditOptions{Roots: k.Roots()}
					if certs {
						o.Certs = storage.NewCertChecker([]*x509.Certificate{k.Root}, nil)
					}
					res, err := storage.VerifyAuditWith(ctx, src.s, o)
					if err != nil || !res.OK() || res.Checked != n || res.Checkpoints != n/1000 {
						b.Fatalf("verify: %+v, %v", res, err)
					}
				}
				recs := float64(b.N * n)
				b.ReportMetric(recs/b.Elapsed().Seconds(), "records/s")
				b.ReportMetric(float64(cpuTime()-c0)/1e3/recs, "cpu-µs/record")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
