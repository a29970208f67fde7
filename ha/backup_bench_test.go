package ha

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
)

// TestBackupScale measures backup, verify and restore of a journal with N
// unexported records: TIER0_BACKUP_RECORDS=N (`make bench-backup` uses 1M;
// numbers in docs/BENCHMARKS.md), or 5,000 as a smoke in `make test`.
func TestBackupScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("TIER0_BACKUP_RECORDS"))
	if n <= 0 {
		n = 5000
	}
	ctx := context.Background()
	clock := newTestClock()
	src := startNode(t, t.TempDir(), clock, func(c *Config) { c.SnapshotThreshold = 1 << 30 })
	cert := bytes.Repeat([]byte{0x30}, 600) // an SVID's DER is ~600 bytes
	start := time.Now()
	var wg sync.WaitGroup
	const workers, batch = 8, 1000
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w * batch; i < n; i += workers * batch {
				recs := make([]*record.Record, 0, batch)
				for j := i; j < min(i+batch, n); j++ {
					r := testRecord("a")
					r.CertDER = cert
					recs = append(recs, r)
				}
				if err := src.Commit(ctx, recs); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("committed %d records in %v", src.JournalStatus().Seq, time.Since(start))

	start = time.Now()
	meta, rc, err := src.Backup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "payload")
	f, _ := os.Create(path)
	if _, err := io.Copy(f, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	f.Sync()
	f.Close()
	t.Logf("backup (raft snapshot + copy to a file): %v, %d bytes", time.Since(start), meta.Size)

	start = time.Now()
	f, _ = os.Open(path)
	info, err := InspectSnapshot(f)
	f.Close()
	if err != nil || info.TailLen != n {
		t.Fatalf("inspect: %v (%d records)", err, info.TailLen)
	}
	t.Logf("verify (parse + hash chain of %d records): %v", info.TailLen, time.Since(start))

	dst := startNode(t, t.TempDir(), clock)
	start = time.Now()
	f, _ = os.Open(path)
	defer f.Close()
	if err := dst.RestoreBackup(ctx, meta, f); err != nil {
		t.Fatal(err)
	}
	t.Logf("restore (raft user restore into a fresh node): %v", time.Since(start))
	if js := dst.JournalStatus(); js.Seq != uint64(n) {
		t.Fatalf("restored seq %d", js.Seq)
	}
}
