package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/api/client"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/operator"
	"github.com/tier0-ca/tier0/internal/restore"
	"github.com/tier0-ca/tier0/storage"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

// Store identity end to end (ha/DESIGN.md "Store identity"): separate
// processes, real SQLite files and Postgres schemas.

// launchRefused starts a server that is expected to refuse its record
// store: it waits for its /readyz to answer 503 and returns the body.
func launchRefused(t *testing.T, dataDir string, args ...string) (*proc, string) {
	t.Helper()
	p := &proc{t: t, dataDir: dataDir, args: args}
	p.launch()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("server log (%s):\n%s", dataDir, p.log.String())
		}
	})
	var body string
	pollUntil(t, 60*time.Second, func() bool {
		if p.exitedNow() {
			t.Fatalf("server exited instead of staying up not-ready:\n%s", p.log.String())
		}
		raw, err := os.ReadFile(filepath.Join(dataDir, "server.json"))
		if err != nil || json.Unmarshal(raw, &p.info) != nil || p.info.PID != p.cmd.Process.Pid {
			return false
		}
		resp, err := http.Get("http://" + p.info.HTTP + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(body, "record store: ha: export: REFUSED")
	})
	return p, body
}

// storeLineage reads the lineage a store was claimed with.
func storeLineage(t *testing.T, dsn string) record.Lineage {
	t.Helper()
	st, err := storage.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, ok, err := st.Lineage(context.Background())
	if err != nil || !ok {
		t.Fatalf("store %s: lineage %v, %v", dsn, ok, err)
	}
	return l
}

// storeSerials returns the serials of every record in the store.
func storeSerials(t *testing.T, dsn string) map[string]uint64 {
	t.Helper()
	st, err := storage.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out := map[string]uint64{}
	if err := st.Range(context.Background(), 0, 0, func(r *record.Record) error { out[r.Serial] = r.Seq; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// mintReceived mints one SVID and records its serial as received.
func mintReceived(t *testing.T, srv *proc, c *client.Client, received map[string]bool) {
	t.Helper()
	chain := must(mintWeb(t, srv, c))
	received[chain[0].SerialNumber.Text(16)] = true
}

func requireStored(t *testing.T, dsn string, received map[string]bool) {
	t.Helper()
	stored := storeSerials(t, dsn)
	for s := range received {
		if _, ok := stored[s]; !ok {
			t.Errorf("SVID serial %s was received by a client but is not in the record store", s)
		}
	}
}

func auditVerify(t *testing.T, dsn, bundle string) {
	t.Helper()
	if out, err := runBin("tier0", "audit", "verify", "--allow-unverified-tail", "--store", dsn, "--bundle", bundle); err != nil {
		t.Fatalf("tier0 audit verify: %v\n%s", err, out)
	}
}

// TestRestoreWithoutStore: a backup restored without --store starts a new
// lineage; pointed at the old store it refuses (readiness with the reason
// naming both lineages and what to do, one log line, the metric) and
// acknowledges nothing, and every SVID a client received is in the store.
// Both ways out work: restore again with --store (the chain continues and
// `tier0 audit verify` passes), or a new, empty store (it starts after the
// backup's exported seq and verifies from there).
func TestRestoreWithoutStore(t *testing.T) {
	tmp := t.TempDir()
	dsn := "sqlite:" + filepath.Join(tmp, "records.db")
	srcDir := filepath.Join(tmp, "src")
	src := startServer(t, srcDir, "--store", dsn)
	agent := agentSVID(t, src, "a1", webID)
	ac := clientAs(t, src, agent)
	received := map[string]bool{}
	for range 3 {
		mintReceived(t, src, ac, received)
	}
	pass := filepath.Join(tmp, "pass")
	if err := os.WriteFile(pass, []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bak := filepath.Join(tmp, "b.tier0")
	var created operator.BackupResult
	if err := json.Unmarshal([]byte(must(src.cli("backup", "create", "--out", bak, "--include-dev-key", "--passphrase-file", pass, "-o", "json"))), &created); err != nil {
		t.Fatal(err)
	}
	for range 4 { // after the backup: in the store, not in the backup
		mintReceived(t, src, ac, received)
	}
	waitExported(t, src)
	src.stop()
	oldLineage := storeLineage(t, dsn)
	lastBefore := storeLast(t, dsn)
	if created.Manifest.Journal.Lineage != oldLineage.String() {
		t.Fatalf("the backup names lineage %q, the store %q", created.Manifest.Journal.Lineage, oldLineage)
	}
	requireStored(t, dsn, received)

	restoreAs := func(dir string, args ...string) restore.Result {
		t.Helper()
		out := must(runBin("tier0", append([]string{"backup", "restore", "--from", bak, "--data-dir", dir, "--passphrase-file", pass, "-o", "json"}, args...)...))
		var res restore.Result
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("restore output %q: %v", out, err)
		}
		return res
	}
	dstDir := filepath.Join(tmp, "dst")
	res := restoreAs(dstDir)
	if !res.NewLineage || !strings.Contains(res.Lineage, "restored from lineage "+oldLineage.ID) || len(res.Warnings) == 0 {
		t.Fatalf("restore without --store: %+v", res)
	}
	dst, body := launchRefused(t, dstDir, "--store", dsn)
	newID := strings.Fields(strings.SplitN(res.Lineage, " lineage ", 2)[1])[0]
	for _, want := range []string{oldLineage.ID, newID, "tier0 backup restore --store DSN", "new, empty store"} {
		if !strings.Contains(body, want) {
			t.Errorf("/readyz %q does not name %q", body, want)
		}
	}
	if v := metricInt(t, dst, "tier0_export_refused"); v != 1 {
		t.Errorf("tier0_export_refused = %d, want 1", v)
	}
	if n := strings.Count(dst.log.String(), "RECORD STORE REFUSED"); n != 1 {
		t.Errorf("%d log lines about the refusal, want 1:\n%s", n, dst.log.String())
	}
	// Nothing acknowledged after the restore: the node issued nothing (not
	// even its own credentials) and serves no API to mint from; its journal
	// holds at most the admin events of its start (its JWT key, before the
	// store check), checked once it has stopped.
	seqAfter := uint64(metricInt(t, dst, "tier0_journal_seq"))
	if len(dst.info.Servers) != 0 {
		t.Errorf("a refused node advertises API addresses %v", dst.info.Servers)
	}
	if _, err := os.Stat(filepath.Join(dstDir, "admin")); err == nil {
		t.Error("a refused node wrote an admin credential")
	}
	if got := storeLast(t, dsn); got != lastBefore {
		t.Fatalf("the refused store moved from seq %d to %d", lastBefore, got)
	}
	dst.stop()
	if after := journalAfter(t, dstDir, res.NodeID, res.Seq); uint64(len(after)) != seqAfter-res.Seq {
		t.Errorf("tier0_journal_seq %d, restored at %d, but %d records after it", seqAfter, res.Seq, len(after))
	} else {
		for _, r := range after {
			if !r.IsEvent() {
				t.Errorf("record %d (%s, serial %s) committed after the restore to a refused store", r.Seq, r.SPIFFEID, r.Serial)
			}
		}
	}
	requireStored(t, dsn, received)

	// Way out 1: restore with --store: the chain the store holds continues.
	res = restoreAs(dstDir, "--force", "--store", dsn)
	if res.NewLineage || res.Seq != lastBefore || !strings.Contains(res.Lineage, oldLineage.ID) {
		t.Fatalf("restore --store: %+v (store at %d, lineage %s)", res, lastBefore, oldLineage)
	}
	dst = startServer(t, dstDir, "--store", dsn)
	dc := clientAs(t, dst, agent)
	for range 3 {
		mintReceived(t, dst, dc, received)
	}
	waitExported(t, dst)
	dst.stop()
	requireStored(t, dsn, received)
	auditVerify(t, dsn, filepath.Join(dstDir, "bundle.pem"))

	// Way out 2: a new lineage in a new, empty store.
	newDir, newDSN := filepath.Join(tmp, "new"), "sqlite:"+filepath.Join(tmp, "new.db")
	res = restoreAs(newDir)
	fresh := startServer(t, newDir, "--store", newDSN)
	mintReceived(t, fresh, clientAs(t, fresh, agent), map[string]bool{})
	waitExported(t, fresh)
	fresh.stop()
	nl := storeLineage(t, newDSN)
	first := uint64(0)
	for _, seq := range storeSerials(t, newDSN) {
		if first == 0 || seq < first {
			first = seq
		}
	}
	if nl.Parent != oldLineage.ID || nl.ClusterID != oldLineage.ClusterID || nl.BaseSeq == 0 || first != nl.BaseSeq+1 {
		t.Fatalf("new store lineage %+v (old %s), first record %d", nl, oldLineage, first)
	}
	auditVerify(t, newDSN, filepath.Join(newDir, "bundle.pem"))
}

// TestForeignStoreRefused: a fresh node pointed at another CA's record
// store (a copy of its SQLite file; its Postgres schema) refuses it and
// leaves it untouched; a node that learns only while serving (the store
// was unreachable at start, --store-optional) stops issuing: mint answers
// Unavailable naming both lineages, and what it issued meanwhile stays in
// its journal.
func TestForeignStoreRefused(t *testing.T) {
	tmp := t.TempDir()
	pgBase, schema := storagetest.PostgresSchema(t)
	sep := "?"
	if strings.Contains(pgBase, "?") {
		sep = "&"
	}
	for _, backend := range []struct{ name, dsn string }{
		{"sqlite", "sqlite:" + filepath.Join(tmp, "a.db")},
		{"postgres", pgBase + sep + "search_path=" + schema},
	} {
		t.Run(backend.name, func(t *testing.T) {
			dir := t.TempDir()
			a := startServer(t, filepath.Join(dir, "a"), "--store", backend.dsn)
			ac := agentClient(t, a, "a1", webID)
			for range 3 {
				must(mintWeb(t, a, ac))
			}
			waitExported(t, a)
			a.stop()
			aLineage, aLast := storeLineage(t, backend.dsn), storeLast(t, backend.dsn)
			dsn := backend.dsn
			if backend.name == "sqlite" { // another CA's records.db, copied
				dsn = "sqlite:" + filepath.Join(dir, "copy.db")
				copyFile(t, strings.TrimPrefix(backend.dsn, "sqlite:"), strings.TrimPrefix(dsn, "sqlite:"))
			}
			b, body := launchRefused(t, filepath.Join(dir, "b"), "--store", dsn)
			if !strings.Contains(body, aLineage.ID) || !strings.Contains(body, "another CA or cluster") {
				t.Errorf("/readyz %q does not name the store's lineage %s", body, aLineage.ID)
			}
			if v := metricInt(t, b, "tier0_export_refused"); v != 1 {
				t.Errorf("tier0_export_refused = %d", v)
			}
			b.stop()
			if l, last := storeLineage(t, dsn), storeLast(t, dsn); !l.Same(aLineage) || last != aLast {
				t.Fatalf("the refused store changed: %s at %d, was %s at %d", l, last, aLineage, aLast)
			}
		})
	}

	t.Run("while serving", func(t *testing.T) {
		dir := t.TempDir()
		a := startServer(t, filepath.Join(dir, "a"), "--store", "sqlite:"+filepath.Join(dir, "a.db"))
		must(mintWeb(t, a, agentClient(t, a, "a1", webID)))
		waitExported(t, a)
		a.stop()
		aLineage := storeLineage(t, "sqlite:"+filepath.Join(dir, "a.db"))
		later := filepath.Join(dir, "later", "records.db") // its directory does not exist yet
		c := startServer(t, filepath.Join(dir, "c"), "--store", "sqlite:"+later, "--store-optional")
		cc := agentClient(t, c, "c1", webID)
		must(mintWeb(t, c, cc))
		if err := os.MkdirAll(filepath.Dir(later), 0o700); err != nil {
			t.Fatal(err)
		}
		copyFile(t, filepath.Join(dir, "a.db"), later)
		var err error
		pollUntil(t, 60*time.Second, func() bool {
			_, err = mintWeb(t, c, cc)
			return err != nil
		})
		if !strings.Contains(err.Error(), "code 14") || !strings.Contains(err.Error(), aLineage.ID) || !strings.Contains(err.Error(), "REFUSED") {
			t.Fatalf("mint after the refusal = %v, want Unavailable (14) naming the store's lineage %s", err, aLineage.ID)
		}
		resp, herr := http.Get("http://" + c.info.HTTP + "/readyz")
		if herr != nil {
			t.Fatal(herr)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || metricInt(t, c, "tier0_export_refused") != 1 {
			t.Fatalf("/readyz %d, tier0_export_refused %d", resp.StatusCode, metricInt(t, c, "tier0_export_refused"))
		}
		if lag := metricInt(t, c, "tier0_export_lag_records"); lag < 1 {
			t.Fatalf("tier0_export_lag_records = %d: what was issued before the refusal must wait in the journal", lag)
		}
	})
}

// TestUpgradeAdoptsLineage: a data dir and a record store from a tier0
// without lineages (journal records, store rows, schema version 4) that
// chain together are adopted at the first start: the journal and the
// store get one lineage, export resumes where the store ends, and `tier0
// audit verify` passes.
func TestUpgradeAdoptsLineage(t *testing.T) {
	tmp := t.TempDir()
	dataDir, dbPath := filepath.Join(tmp, "data"), filepath.Join(tmp, "records.db")
	recs := oldJournal(t, dataDir, 6)
	oldStore(t, dbPath, recs[:4])

	srv := startServer(t, dataDir, "--store", "sqlite:"+dbPath)
	must(mintWeb(t, srv, agentClient(t, srv, "a1", webID)))
	waitExported(t, srv)
	srv.stop()
	l := storeLineage(t, "sqlite:"+dbPath)
	if l.BaseSeq != 0 || !strings.Contains(srv.log.String(), "adopted_from_store=false") || !strings.Contains(srv.log.String(), l.ID) {
		t.Fatalf("store lineage %s; log:\n%s", l, srv.log.String())
	}
	serials := storeSerials(t, "sqlite:"+dbPath)
	for _, r := range recs {
		if serials[r.Serial] != r.Seq {
			t.Fatalf("record %d (serial %s) of the old journal is at seq %d in the store", r.Seq, r.Serial, serials[r.Serial])
		}
	}
	auditVerify(t, "sqlite:"+dbPath, filepath.Join(dataDir, "bundle.pem"))
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// oldJournal writes n records into a new raft journal in dataDir, as a
// tier0 without lineages left it (no exporter ran: no lineage).
func oldJournal(t *testing.T, dataDir string, n int) []*record.Record {
	t.Helper()
	ctx := context.Background()
	node, err := ha.New(ctx, ha.Config{NodeID: "node1", DataDir: dataDir, Bootstrap: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := node.WaitLeader(wctx); err != nil {
		t.Fatal(err)
	}
	recs := storagetest.Chain("old", 1, n, record.Genesis) // contents; the journal seals them again
	for _, r := range recs {
		// JWT-SVID records: no certificate for audit verify to check
		// against a CA that does not exist yet.
		r.NodeID, r.CertDER, r.IssuerKeyID = "node1", nil, "jwt:old"
		if err := node.Commit(ctx, []*record.Record{r}); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := node.Lineage(); ok {
		t.Fatal("the old journal has a lineage")
	}
	return recs
}

// oldStore writes recs into a SQLite store at schema version 4 (before
// lineages).
func oldStore(t *testing.T, path string, recs []*record.Record) {
	t.Helper()
	ctx := context.Background()
	st, err := storage.Open(ctx, "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	err = st.Append(ctx, recs)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	// Undo every migration after 0004 (lineage 0005, serial columns 0006,
	// tree checkpoints 0007, admin events 0008).
	execSQLite(t, path, "DROP TABLE store_lineage")
	execSQLite(t, path, "DROP TABLE IF EXISTS tree_checkpoints")        // 0007
	execSQLite(t, path, "ALTER TABLE authz_decisions DROP COLUMN code") // 0009
	execSQLite(t, path, "DROP TABLE decision_checkpoints")              // 0010
	execSQLite(t, path, "DROP INDEX authz_decisions_chain_seq")
	execSQLite(t, path, "ALTER TABLE authz_decisions DROP COLUMN chain_seq")
	execSQLite(t, path, "ALTER TABLE authz_decisions DROP COLUMN prev_hash")
	execSQLite(t, path, "ALTER TABLE authz_decisions DROP COLUMN hash")
	execSQLite(t, path, "DROP INDEX IF EXISTS issuance_records_serial_hex")
	execSQLite(t, path, "DROP INDEX IF EXISTS issuance_records_kind_seq")
	execSQLite(t, path, "ALTER TABLE issuance_records DROP COLUMN serial_hex")
	execSQLite(t, path, "ALTER TABLE issuance_records DROP COLUMN kind")
	execSQLite(t, path, "ALTER TABLE issuance_records DROP COLUMN event_action") // 0008
	execSQLite(t, path, "ALTER TABLE issuance_records DROP COLUMN event_detail")
	execSQLite(t, path, "DELETE FROM schema_version WHERE version >= 5")
}
