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

	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/backupfile"
	"github.com/tier0-ca/tier0/internal/hatest"
)

// backup writes a backup of a node holding one entry, the given dev key
// files (sealed under pass) and three records.
func backup(t *testing.T, keys map[string][]byte, pass []byte) (string, ha.JournalStatus) {
	t.Helper()
	ctx := context.Background()
	n := hatest.Populated(t, 3)
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
	return out, n.JournalStatus()
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
	if res.Seq != 3 || res.Head != hex.EncodeToString(js.Head) || res.Entries != 1 || res.BundleRoots != 1 || res.DevKeys != 1 || res.NodeID != "r1" {
		t.Fatalf("result %+v", res)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "ca", "root.key")); err != nil || string(b) != "PEM" {
		t.Fatalf("dev key restored: %q %v", b, err)
	}
	if _, err := Run(ctx, Config{DataDir: dir, From: file, Logger: quiet}); err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Fatalf("non-empty dir: %v", err)
	}
	res, err = Run(ctx, Config{DataDir: dir, From: file, Force: true, Logger: quiet})
	if err != nil || res.Seq != 3 || res.NodeID != "n1" || len(res.Warnings) != 1 {
		t.Fatalf("--force: %+v %v", res, err)
	}

	// The restored dir opens as a node with the backup's journal.
	n := hatest.Node(t, func(c *ha.Config) { c.DataDir, c.NodeID = dir, "n1" })
	if got := n.JournalStatus(); got.Seq != 3 || hex.EncodeToString(got.Head) != res.Head {
		t.Fatalf("restored node journal %+v", got)
	}
}

func TestRestoreWithoutDevKeys(t *testing.T) {
	file, _ := backup(t, nil, nil)
	_, err := Run(context.Background(), Config{DataDir: t.TempDir(), From: file, Passphrase: []byte("correct horse battery"), Logger: slog.New(slog.DiscardHandler)})
	if err == nil || err.Error() != "restore: --passphrase-file given but the backup holds no dev key" {
		t.Fatalf("passphrase without dev keys: %v", err)
	}
}
