package ha

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
)

// TestBackupRestore takes a backup of a node, installs it into a fresh node
// and checks that state matches and the journal continues the same chain.
func TestBackupRestore(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	src := startNode(t, t.TempDir(), clock)
	if err := src.SetBundle(ctx, [][]byte{[]byte("root-der")}, "example.org"); err != nil {
		t.Fatal(err)
	}
	e, err := src.CreateEntry(ctx, Entry{ID: "e1", Agent: "a1", SPIFFEID: "spiffe://example.org/w", TTL: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.CreateToken(ctx, tokenHash("tok"), "a1", clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	var recs []*record.Record
	for range 5 {
		recs = append(recs, testRecord("a1"))
	}
	if err := src.Commit(ctx, recs); err != nil {
		t.Fatal(err)
	}
	meta, rc, err := src.Backup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	info, err := InspectSnapshot(bytes.NewReader(payload))
	if err != nil {
		t.Fatalf("InspectSnapshot: %v", err)
	}
	srcJS := src.JournalStatus()
	if info.Seq != srcJS.Seq || certCount(src) != 5 || !bytes.Equal(info.Head, srcJS.Head) || len(info.EntryIDs) != 1 || info.EntryIDs[0] != e.ID || info.Tokens != 1 {
		t.Fatalf("info = %+v, journal %+v", info, srcJS)
	}

	dst := startNode(t, t.TempDir(), clock)
	if err := dst.RestoreBackup(ctx, meta, bytes.NewReader(payload)); err != nil {
		t.Fatalf("RestoreBackup: %v", err)
	}
	if got := dst.JournalStatus(); got.Seq != srcJS.Seq || !bytes.Equal(got.Head, srcJS.Head) {
		t.Fatalf("restored journal %+v, want %+v", got, srcJS)
	}
	if got := dst.ListEntries(""); len(got) != 1 || got[0].ID != e.ID {
		t.Fatalf("restored entries %+v", got)
	}
	if agent, err := dst.ConsumeToken(ctx, tokenHash("tok")); err != nil || agent != "a1" {
		t.Fatalf("ConsumeToken = %q, %v", agent, err)
	}
	next := testRecord("a1")
	if err := dst.Commit(ctx, []*record.Record{next}); err != nil {
		t.Fatal(err)
	}
	tail := dst.Tail(srcJS.Seq, 1<<20) // the token's consumption (an admin event), then next
	verifyChain(t, tail, srcJS.Seq+1, srcJS.Head)
	if len(tail) != 2 || !tail[0].IsEvent() || tail[0].Action != "token.consume" || tail[1].Serial != next.Serial {
		t.Fatalf("records after the restore: %+v", tail)
	}
}

func TestInspectSnapshotRejectsTampering(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	src := startNode(t, t.TempDir(), clock)
	if err := src.Commit(ctx, []*record.Record{testRecord("a"), testRecord("b")}); err != nil {
		t.Fatal(err)
	}
	_, rc, err := src.Backup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := io.ReadAll(rc)
	rc.Close()
	bad := bytes.Replace(payload, []byte("workload/b"), []byte("workload/c"), 1)
	if _, err := InspectSnapshot(bytes.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "hash") {
		t.Fatalf("tampered record: err = %v", err)
	}
	if _, err := InspectSnapshot(bytes.NewReader(payload[:len(payload)-20])); err == nil {
		t.Fatal("truncated payload accepted")
	}
}

// TestAdvanceSnapshot moves a backup's head over records the store got later.
func TestAdvanceSnapshot(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	src := startNode(t, t.TempDir(), clock)
	if err := src.Commit(ctx, []*record.Record{testRecord("a")}); err != nil {
		t.Fatal(err)
	}
	_, rc, err := src.Backup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := io.ReadAll(rc)
	rc.Close()
	later := []*record.Record{testRecord("b"), testRecord("c")}
	if err := src.Commit(ctx, later); err != nil {
		t.Fatal(err)
	}
	from := func(rs []*record.Record) func(func(*record.Record) error) error {
		return func(fn func(*record.Record) error) error {
			for _, r := range rs {
				if err := fn(r); err != nil {
					return err
				}
			}
			return nil
		}
	}
	var out bytes.Buffer
	info, err := AdvanceSnapshot(bytes.NewReader(payload), &out, from(later))
	if err != nil {
		t.Fatal(err)
	}
	if js := src.JournalStatus(); info.Seq != 3 || !bytes.Equal(info.Head, js.Head) || info.TailLen != 0 || info.ExportedSeq != 3 {
		t.Fatalf("advanced info %+v, source %+v", info, js)
	}
	if _, err := InspectSnapshot(bytes.NewReader(out.Bytes())); err != nil {
		t.Fatalf("advanced snapshot: %v", err)
	}
	out.Reset()
	if _, err := AdvanceSnapshot(bytes.NewReader(payload), &out, from(nil)); err != nil || !bytes.Equal(out.Bytes(), payload) {
		t.Fatalf("no new records: err %v, changed %v", err, !bytes.Equal(out.Bytes(), payload))
	}
	if _, err := AdvanceSnapshot(bytes.NewReader(payload), &out, from(later[1:])); err == nil {
		t.Fatal("a gap was accepted")
	}
}
