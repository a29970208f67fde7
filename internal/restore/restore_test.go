package restore

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/backupfile"
	"github.com/tier0-ca/tier0/internal/hatest"
	"github.com/tier0-ca/tier0/storage"
)

// backup writes a backup of a node holding one entry, the given dev key
// files (sealed under pass) and three records.
func backup(t *testing.T, keys map[string][]byte, pass []byte) (string, ha.JournalStatus) {
	t.Helper()
	out, n := backupNode(t, keys, pass)
	return out, n.JournalStatus()
}

// backupNode is backup that also returns the node (its records: n.Tail).
func backupNode(t *testing.T, keys map[string][]byte, pass []byte) (string, *ha.Node) {
	t.Helper()
	n := hatest.Populated(t, 3)
	return backupOf(t, n, keys, pass), n
}

// backupOf writes a backup of n.
func backupOf(t *testing.T, n *ha.Node, keys map[string][]byte, pass []byte) string {
	t.Helper()
	ctx := context.Background()
	meta, rc, err := n.Backup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	raw, _ := json.Marshal(meta)
	out := filepath.Join(t.TempDir(), "b.tier0")
	if _, err := backupfile.Create(out, backupfile.Header{TrustDomain: "example.org", NodeID: "n1", CreatedAt: time.Now(),
		RaftIndex: meta.Index, RaftTerm: meta.Term, RaftMeta: raw, Size: meta.Size}, rc, keys, pass); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRestore(t *testing.T) {
	ctx := context.Background()
	pass := []byte("correct horse battery")
	file, js := backup(t, map[string][]byte{"ca/root.key": []byte("PEM")}, pass)
	dir := filepath.Join(t.TempDir(), "data")
	quiet := slog.New(slog.DiscardHandler)
	if _, err := Run(ctx, Config{DataDir: dir, From: file, TrustDomain: "other.org", Logger: quiet}); err == nil ||
		err.Error() != fmt.Sprintf("restore: %s is a backup of trust domain %q, not %q", file, "example.org", "other.org") {
		t.Fatalf("other trust domain: %v", err)
	}
	if _, err := Run(ctx, Config{DataDir: dir, From: file, Passphrase: []byte("wrong horse battery!"), Logger: quiet}); err == nil ||
		!strings.Contains(err.Error(), "wrong passphrase") {
		t.Fatalf("wrong passphrase: %v", err)
	}
	res, err := Run(ctx, Config{DataDir: dir, From: file, NodeID: "r1", Passphrase: pass, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if res.Seq != js.Seq || res.Head != hex.EncodeToString(js.Head) || res.Entries != 1 || res.BundleRoots != 1 || res.DevKeys != 1 || res.NodeID != "r1" {
		t.Fatalf("result %+v", res)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "ca", "root.key")); err != nil || string(b) != "PEM" {
		t.Fatalf("dev key restored: %q %v", b, err)
	}
	if _, err := Run(ctx, Config{DataDir: dir, From: file, Logger: quiet}); err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Fatalf("non-empty dir: %v", err)
	}
	res, err = Run(ctx, Config{DataDir: dir, From: file, Force: true, Logger: quiet})
	if err != nil || res.Seq != js.Seq || res.NodeID != "n1" || len(res.Warnings) != 2 || !res.NewLineage {
		t.Fatalf("--force: %+v %v", res, err)
	}

	// The restored dir opens as a node with the backup's journal, in a new
	// lineage (no --store) that starts after the backup's exported seq.
	n := hatest.Node(t, func(c *ha.Config) { c.DataDir, c.NodeID = dir, "n1" })
	if got := n.JournalStatus(); got.Seq != js.Seq || hex.EncodeToString(got.Head) != res.Head {
		t.Fatalf("restored node journal %+v", got)
	}
	if l, ok := n.Lineage(); !ok || l.BaseSeq != 0 || !strings.Contains(res.Lineage, l.ID) {
		t.Fatalf("restored lineage %+v, %v; result %q", l, ok, res.Lineage)
	}
}

// TestRestoreStore: --store must be the backup's store: a store whose last
// record is not the backup's at that seq, or of another lineage, is refused;
// the backup's own store (claimed by a lineage the backup, older, does not
// name) is taken and its lineage adopted.
func TestRestoreStore(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	file, src := backupNode(t, nil, nil)
	recs := src.Tail(0, 10)
	open := func(t *testing.T, recs []*record.Record, l *record.Lineage) string {
		t.Helper()
		dsn := "sqlite:" + filepath.Join(t.TempDir(), "records.db")
		st, err := storage.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if l != nil {
			if _, err := st.ClaimLineage(ctx, *l, "n1", time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Append(ctx, recs); err != nil {
			t.Fatal(err)
		}
		return dsn
	}
	mine := &record.Lineage{ClusterID: "c", ID: "l", BaseHash: record.Genesis, CreatedAt: time.Now().UTC()}
	forked := hatest.Records(2)
	prev := record.Genesis
	for i, r := range forked {
		r.Seq, r.CommittedAt = uint64(i+1), time.Now().UTC()
		prev = r.Seal(prev)
	}
	for _, tc := range []struct {
		name, want string
		dsn        string
	}{
		{"forked", "--store's record 2 is not the backup's record 2", open(t, forked, nil)},
		{"ahead of another chain", "does not continue the backup's chain", open(t, append(recs[:len(recs):len(recs)], func() *record.Record {
			r := hatest.Records(1)[0]
			r.Seq, r.CommittedAt = uint64(len(recs)+1), time.Now().UTC()
			r.Seal(record.Genesis) // links to the wrong record
			return r
		}()), nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run(ctx, Config{DataDir: t.TempDir(), From: file, Store: tc.dsn, Logger: quiet})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("restore --store: %v, want %q", err, tc.want)
			}
		})
	}
	dir := t.TempDir()
	res, err := Run(ctx, Config{DataDir: dir, From: file, Store: open(t, recs[:2], mine), Logger: quiet})
	if err != nil || res.NewLineage || res.Seq != uint64(len(recs)) || !strings.Contains(res.Lineage, "lineage l") {
		t.Fatalf("restore --store of the backup's store: %+v, %v", res, err)
	}
	n := hatest.Node(t, func(c *ha.Config) { c.DataDir, c.NodeID = dir, "n1" })
	if l, ok := n.Lineage(); !ok || !l.Same(*mine) {
		t.Fatalf("restored lineage %+v, %v; want the store's", l, ok)
	}

	// A backup that names its lineage, restored with another lineage's store.
	exported := hatest.Populated(t, 3)
	st, err := storage.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "own.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ectx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- exported.RunExporter(ectx, st) }()
	deadline := time.Now().Add(15 * time.Second)
	for js := exported.JournalStatus(); js.ExportedSeq != js.Seq; js = exported.JournalStatus() {
		if time.Now().After(deadline) {
			t.Fatal("export did not finish")
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	cancel()
	<-done
	own, _ := exported.Lineage()
	_, err = Run(ctx, Config{DataDir: t.TempDir(), From: backupOf(t, exported, nil, nil), Store: open(t, nil, mine), Logger: quiet})
	if err == nil || !strings.Contains(err.Error(), "--store holds cluster c lineage l, the backup is "+own.String()) {
		t.Fatalf("restore --store of another lineage's store: %v", err)
	}
}

func TestRestoreWithoutDevKeys(t *testing.T) {
	file, _ := backup(t, nil, nil)
	_, err := Run(context.Background(), Config{DataDir: t.TempDir(), From: file, Passphrase: []byte("correct horse battery"), Logger: slog.New(slog.DiscardHandler)})
	if err == nil || err.Error() != "restore: --passphrase-file given but the backup holds no dev key" {
		t.Fatalf("passphrase without dev keys: %v", err)
	}
}
