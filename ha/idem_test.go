package ha

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
)

// TestIdemIndexSurvivesRestartSnapshotAndExport: a keyed commit is found by
// its key from the tail, after export (from the store), and after a
// restart through log replay and through a snapshot.
func TestIdemIndexSurvivesRestartSnapshotAndExport(t *testing.T) {
	for _, snapshot := range []bool{false, true} {
		t.Run(map[bool]string{false: "log-replay", true: "snapshot"}[snapshot], func(t *testing.T) {
			dir, clock := t.TempDir(), newTestClock()
			trailing := func(c *Config) { c.TrailingLogs = 1 }
			n := startNode(t, dir, clock, trailing)
			ctx := context.Background()
			recs := []*record.Record{testRecord("a"), testRecord("b"), testRecord("c")}
			if err := n.CommitKeyed(ctx, recs, []uint64{11, 0, 33}); err != nil {
				t.Fatalf("CommitKeyed: %v", err)
			}
			if err := n.CommitKeyed(ctx, recs[:1], nil); err == nil {
				t.Fatal("CommitKeyed with a missing key slice succeeded")
			}
			check := func(n *Node, when string) {
				t.Helper()
				for key, want := range map[uint64]*record.Record{11: recs[0], 33: recs[2], 22: nil, 0: nil} {
					got, err := n.Committed(ctx, key)
					if err != nil {
						t.Fatalf("%s: Committed(%d): %v", when, key, err)
					}
					switch {
					case want == nil && got != nil:
						t.Errorf("%s: Committed(%d) = seq %d, want none", when, key, got.Seq)
					case want != nil && (got == nil || got.Seq != want.Seq || !bytes.Equal(got.CertDER, want.CertDER)):
						t.Errorf("%s: Committed(%d) = %+v, want seq %d", when, key, got, want.Seq)
					}
				}
				if got := n.IdemEntries(); got != 2 {
					t.Errorf("%s: IdemEntries = %d, want 2", when, got)
				}
			}
			check(n, "in the tail")
			if snapshot {
				if err := n.raft.Snapshot().Error(); err != nil {
					t.Fatalf("Snapshot: %v", err)
				}
			}
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
			n2 := startNode(t, dir, clock, trailing)
			if got := n2.fsm.restores.Load(); got != map[bool]int64{false: 0, true: 1}[snapshot] {
				t.Errorf("fsm restores = %d", got)
			}
			check(n2, "after restart")

			// Exported: the records leave the tail and are read from the store.
			sink := &sliceSink{}
			runExporter(t, n2, sink)
			waitFor(t, "export", func() bool { return n2.JournalStatus().Unexported == 0 })
			check(n2, "after export")
		})
	}
}

// TestIdemIndexSweepsExpired: entries go once their certificate expired,
// by the clock of the records entries (deterministic on every node).
func TestIdemIndexSweepsExpired(t *testing.T) {
	var x idemIndex
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func(seq uint64, naf time.Time) *record.Record { return &record.Record{Seq: seq, NotAfter: naf} }
	x.add([]*record.Record{mk(1, now.Add(time.Minute)), mk(2, now.Add(time.Hour))}, []uint64{1, 2}, now)
	if len(x.m) != 2 {
		t.Fatalf("entries = %d, want 2", len(x.m))
	}
	// Enough later appends to trigger a sweep, 2 minutes on.
	later := now.Add(2 * time.Minute)
	recs := make([]*record.Record, 1024)
	keys := make([]uint64, len(recs))
	for i := range recs {
		recs[i], keys[i] = mk(uint64(3+i), later.Add(time.Hour)), uint64(100+i)
	}
	x.add(recs, keys, later)
	if _, ok := x.m[1]; ok {
		t.Error("expired key 1 still indexed after a sweep")
	}
	if _, ok := x.m[2]; !ok {
		t.Error("live key 2 swept")
	}
	// Pack and unpack round trip; a seq beyond the journal is refused.
	y, err := unpackIdem(x.pack(), 2000)
	if err != nil || len(y.m) != len(x.m) || y.m[2] != x.m[2] {
		t.Fatalf("unpack: %d entries, %v", len(y.m), err)
	}
	if _, err := unpackIdem(x.pack(), 5); err == nil {
		t.Error("unpack accepted an index beyond the journal")
	}
	if _, err := unpackIdem([]byte{1, 2, 3}, 5); err == nil {
		t.Error("unpack accepted a truncated index")
	}
}
