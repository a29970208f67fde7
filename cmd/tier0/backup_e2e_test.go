package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tier0-ca/tier0/api/client"
	"github.com/tier0-ca/tier0/internal/operator"
	"github.com/tier0-ca/tier0/internal/restore"
	"github.com/tier0-ca/tier0/storage"
)

// agentSVID bootstraps agent NAME on srv (granting it ids) and returns its SVID.
func agentSVID(t *testing.T, srv *proc, name string, grants ...string) *x509svid.SVID {
	t.Helper()
	token := strings.TrimSpace(must(srv.cli("token", "create", "--agent", name)))
	for _, id := range grants {
		must(srv.cli("entry", "create", "--agent", name, "--spiffe-id", id))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svid, err := client.Bootstrap(ctx, []string{srv.addr()}, srv.td(), srv.bundle(), token)
	if err != nil {
		t.Fatalf("bootstrap %s: %v", name, err)
	}
	return svid
}

// clientAs connects to srv with svid.
func clientAs(t *testing.T, srv *proc, svid *x509svid.SVID) *client.Client {
	t.Helper()
	c, err := client.New(context.Background(), client.Config{Addrs: []string{srv.addr()}, TrustDomain: srv.td(), Bundle: srv.bundle(), SVID: client.NewRotatingSVID(svid), MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitExported polls srv's metrics until its export lag is 0.
func waitExported(t *testing.T, srv *proc) {
	t.Helper()
	pollUntil(t, 60*time.Second, func() bool {
		return metric(t, srv, "tier0_export_lag_records ") == "tier0_export_lag_records 0"
	})
}

func storeLast(t *testing.T, dsn string) uint64 {
	t.Helper()
	st, err := storage.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	last, err := st.LastSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// TestBackupRestore: backup of a running server, bad inputs refused, restore
// into a new data dir against the same record store; the restored node has
// the same bundle, entries and agents, continues the chain, and the store's
// chain verifies across the restore point.
func TestBackupRestore(t *testing.T) {
	tmp := t.TempDir()
	dsn := "sqlite:" + filepath.Join(tmp, "records.db")
	srcDir, dstDir := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst")
	src := startServer(t, srcDir, "--store", dsn)
	agent := agentSVID(t, src, "a1", webID)
	ac := clientAs(t, src, agent)
	for range 3 {
		must(mintWeb(t, src, ac))
	}
	laterTok := strings.TrimSpace(must(src.cli("token", "create", "--agent", "later"))) // unused: restored too
	pass := filepath.Join(tmp, "pass")
	if err := os.WriteFile(pass, []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bak, plain := filepath.Join(tmp, "b.tier0"), filepath.Join(tmp, "plain.tier0")
	out := must(src.cli("backup", "create", "--out", bak, "--include-dev-key", "--passphrase-file", pass, "-o", "json"))
	var created operator.BackupResult
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("backup create output %q: %v", out, err)
	}
	must(src.cli("backup", "create", "--out", plain))
	if created.Manifest.TrustDomain != "example.org" || created.Manifest.Journal.Seq == 0 || created.Manifest.DevKeys == nil {
		t.Fatalf("manifest %+v", created.Manifest)
	}
	// Key custody: the soft key file's bytes are in neither backup (only sealed).
	key, err := os.ReadFile(filepath.Join(srcDir, "ca", "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{bak, plain} {
		raw, _ := os.ReadFile(f)
		if bytes.Contains(raw, key) || bytes.Contains(raw, []byte("PRIVATE KEY")) {
			t.Fatalf("%s holds the root key in the clear", f)
		}
	}
	must(src.cli("backup", "verify", bak))

	// Issuance after the backup point reaches the store: restore catches up.
	for range 2 {
		must(mintWeb(t, src, ac))
	}
	waitExported(t, src)
	entriesBefore := must(src.cli("entry", "list", "-o", "json"))
	bundleBefore := must(os.ReadFile(filepath.Join(srcDir, "bundle.pem")))
	src.stop()
	last := storeLast(t, dsn)

	// Bad input.
	raw := must(os.ReadFile(bak))
	trunc, corrupt := filepath.Join(tmp, "trunc.tier0"), filepath.Join(tmp, "corrupt.tier0")
	_ = os.WriteFile(trunc, raw[:len(raw)/2], 0o600)
	bad := bytes.Clone(raw)
	bad[len(bad)/2] ^= 0x01
	_ = os.WriteFile(corrupt, bad, 0o600)
	for _, f := range []string{trunc, corrupt} {
		if _, err := runBin("tier0", "backup", "verify", f); err == nil || !strings.Contains(err.Error(), "checksum mismatch (the file is truncated or corrupted)") {
			t.Fatalf("verify %s: %v", filepath.Base(f), err)
		}
		if _, err := runBin("tier0", "backup", "restore", "--from", f, "--data-dir", filepath.Join(tmp, "x")); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
			t.Fatalf("restore %s: %v", filepath.Base(f), err)
		}
	}
	if _, err := runBin("tier0", "backup", "restore", "--from", bak, "--data-dir", dstDir, "--trust-domain", "other.org"); err == nil ||
		!strings.Contains(err.Error(), `is a backup of trust domain "example.org", not "other.org"`) {
		t.Fatalf("restore into another trust domain: %v", err)
	}
	if _, err := runBin("tier0", "backup", "restore", "--from", bak, "--data-dir", srcDir); err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Fatalf("restore onto a non-empty dir: %v", err)
	}
	if _, err := os.Stat(dstDir); err == nil {
		t.Fatal("a refused restore created the data dir")
	}

	out = must(runBin("tier0", "backup", "restore", "--from", bak, "--data-dir", dstDir, "--passphrase-file", pass, "--store", dsn, "--trust-domain", "example.org", "-o", "json"))
	var res restore.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("restore output %q: %v", out, err)
	}
	if res.Seq != last || res.CaughtUp != last-created.Manifest.Journal.Seq || res.DevKeys != 1 {
		t.Fatalf("restore result %+v, store last %d, backup seq %d", res, last, created.Manifest.Journal.Seq)
	}
	if !bytes.Equal(must(os.ReadFile(filepath.Join(dstDir, "ca", "root.key"))), key) {
		t.Fatal("the dev key was not restored")
	}

	dst := startServer(t, dstDir, "--store", dsn)
	if got := must(os.ReadFile(filepath.Join(dstDir, "bundle.pem"))); !bytes.Equal(got, bundleBefore) {
		t.Fatalf("bundle differs after restore:\n%s\nwant\n%s", got, bundleBefore)
	}
	if got := must(dst.cli("entry", "list", "-o", "json")); got != entriesBefore {
		t.Fatalf("entries differ after restore:\n%s\nwant\n%s", got, entriesBefore)
	}
	// The agent bootstrapped on the source keeps working; the unused token too.
	dc := clientAs(t, dst, agent)
	for range 2 {
		must(mintWeb(t, dst, dc))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.Bootstrap(ctx, []string{dst.addr()}, dst.td(), dst.bundle(), laterTok); err != nil {
		t.Fatalf("join token made before the backup, used after the restore: %v", err)
	}
	waitExported(t, dst)
	dst.stop()

	st, err := storage.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	vr, err := storage.Verify(context.Background(), st, 0, 0)
	if err != nil || !vr.OK() || vr.Checked <= last+2 {
		t.Fatalf("store chain across the restore point: %+v, %v (restore point seq %d)", vr, err, last)
	}
	if out, err := runBin("tier0", "audit", "verify", "--allow-unverified-tail", "--store", dsn, "--bundle", filepath.Join(dstDir, "bundle.pem")); err != nil {
		t.Fatalf("tier0 audit verify across the restore point: %v\n%s", err, out)
	}
	t.Logf("chain verified: %d records, restore point at seq %d (%d caught up from the store), head %s", vr.Checked, last, res.CaughtUp, hex.EncodeToString(vr.Head))
}
