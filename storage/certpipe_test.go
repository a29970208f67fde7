package storage_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

// errAfter is a reader whose Range fails after n records.
type errAfter struct {
	*memLog
	n int
}

var errRead = errors.New("read failed")

func (e errAfter) Range(ctx context.Context, from, to uint64, fn func(*record.Record) error) error {
	i := 0
	return e.memLog.Range(ctx, from, to, func(r *record.Record) error {
		if i++; i > e.n {
			return errRead
		}
		return fn(r)
	})
}

// TestVerifyCertsPipelined: certificate checks run beside the reading in
// batches; the first problem is still the lowest seq, in any batch, also
// when the chain breaks later, and a failing read ends the checks.
func TestVerifyCertsPipelined(t *testing.T) {
	ctx := context.Background()
	k := storagetest.NewAuditKey(t)
	const n = 3000 // six batches
	clean := syntheticLog(t, k, n, 40)
	verify := func(l storage.AuditReader, from uint64) storage.AuditResult {
		t.Helper()
		res, err := storage.VerifyAuditWith(ctx, l, storage.AuditOptions{From: from, Roots: k.Roots(), Certs: storage.NewCertChecker(k.Roots(), nil)})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := verify(clean, 0); !res.OK() || res.Checked != n {
		t.Fatalf("clean: %+v", res)
	}
	// Forge records' serial columns (certificate mismatch) and re-seal the
	// chain so only the certificate check can see it.
	forged := func(bad ...uint64) *memLog {
		m := &memLog{recs: make([]*record.Record, n)}
		prev, cp := record.Genesis, uint64(0)
		for i, r := range clean.recs {
			c := *r
			for _, b := range bad {
				if c.Seq == b {
					c.Serial = "deadbeef"
				}
			}
			prev = c.Seal(prev)
			m.recs[i] = &c
			if c.Seq%1000 == 0 {
				m.cps = append(m.cps, k.CheckpointAfter(t, &c, cp))
				cp = c.Seq
			}
		}
		return m
	}
	for _, tc := range []struct {
		bad  []uint64
		want uint64
	}{{[]uint64{2900, 1300}, 1300}, {[]uint64{513}, 513}, {[]uint64{n}, n}} {
		res := verify(forged(tc.bad...), 0)
		if res.FirstBad != tc.want || res.Problem != storage.ProblemCertMismatch || !strings.Contains(res.Detail, `serial column "deadbeef"`) {
			t.Errorf("forged %v: %+v", tc.bad, res)
		}
	}
	// From the middle (anchored at checkpoint 1000): records before From
	// are not certificate-checked.
	if res := verify(forged(600, 2100), 1001); res.FirstBad != 2100 || res.Problem != storage.ProblemCertMismatch {
		t.Errorf("from 1001: %+v", res)
	}
	if _, err := storage.VerifyAuditWith(ctx, errAfter{clean, 1700}, storage.AuditOptions{Roots: k.Roots(), Certs: storage.NewCertChecker(k.Roots(), nil)}); !errors.Is(err, errRead) {
		t.Fatalf("failing read: %v", err)
	}
}
