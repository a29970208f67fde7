package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/internal/testenv"
	"github.com/tier0-ca/tier0/storage"
)

// mintSerials mints n SVIDs for csr in one call and returns their serials
// (as the journal spells them: lowercase hex).
func mintSerials(ctx context.Context, ag *client.Client, csr []byte, n int) ([]string, error) {
	items := make([]*tier0v1.MintItem, n)
	for i := range items {
		items[i] = &tier0v1.MintItem{Csr: csr}
	}
	resp, err := ag.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: items})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range resp.GetResults() {
		if e := r.GetError(); e != nil {
			return out, status.Error(codes.Code(e.GetCode()), e.GetMessage())
		}
		leaf, err := x509.ParseCertificate(r.GetChain()[0])
		if err != nil {
			return out, err
		}
		out = append(out, leaf.SerialNumber.Text(16))
	}
	return out, nil
}

func mustMint(t *testing.T, ag *client.Client, csr []byte, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := mintSerials(ctx, ag, csr, n)
	if err != nil {
		t.Fatalf("mint: %v", err)
	}
	return s
}

// flipInWAL changes one hex digit of needle's single occurrence in the raft
// log segments under dataDir (the node is stopped), as a bit flip on disk
// would, keeping the JSON valid so that only the integrity check can tell.
func flipInWAL(t *testing.T, dataDir, needle string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dataDir, "raft", "wal", "*.wal"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no raft-wal segments in %s: %v", dataDir, err)
	}
	found := 0
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(b, []byte(needle))
		if i < 0 {
			continue
		}
		found += bytes.Count(b, []byte(needle))
		pos := int64(i + len(needle) - 2) // the serial's last hex digit
		c := b[pos]
		flipped := byte('0')
		if c == '0' {
			flipped = '1'
		}
		f, err := os.OpenFile(name, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte{flipped}, pos); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("flipped %q -> %q at offset %d of %s", c, flipped, pos, filepath.Base(name))
	}
	if found != 1 {
		t.Fatalf("%q occurs %d times in the raft log, want once", needle, found)
	}
}

// waitNotReady waits until p (launched, not waited for) serves /readyz
// with 503 and returns the body.
func waitNotReady(t *testing.T, p *proc) string {
	t.Helper()
	var body string
	pollUntil(t, 60*time.Second, func() bool {
		if p.exitedNow() {
			t.Fatalf("server exited:\n%s", p.log.String())
		}
		raw, err := os.ReadFile(filepath.Join(p.dataDir, "server.json"))
		if err != nil || json.Unmarshal(raw, &p.info) != nil || p.info.PID != p.cmd.Process.Pid {
			return false
		}
		code, b := getReadyz(p)
		body = b
		return code == http.StatusServiceUnavailable && strings.Contains(b, "not ready")
	})
	return body
}

func getReadyz(p *proc) (int, string) {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + p.info.HTTP + "/readyz")
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var divergedRe = regexp.MustCompile(`not ready: (?:raft: [^;]*; )?raft log: ha: diverged at raft index (\d+) \(command type 0x01\): integrity: SHA-256 of the entry does not match the digest the leader computed \(altered on disk or in transit\)`)

// checkDiverged checks what a node latched on the altered record says: its
// /readyz names the index, its log says it once with the same index, the
// gauge is 1.
func checkDiverged(t *testing.T, p *proc) {
	t.Helper()
	body := waitNotReady(t, p)
	m := divergedRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("/readyz: %q", body)
	}
	line := fmt.Sprintf(`msg="ha: fsm: DIVERGED: a committed raft entry cannot be applied; this node stops applying the log and refuses writes until repaired (docs/OPERATIONS.md)" node=%s index=%s`, p.info.NodeID, m[1])
	if n := strings.Count(p.log.String(), line); n != 1 {
		t.Fatalf("log has %d lines %q:\n%s", n, line, p.log.String())
	}
	if g := p.metric(t, "tier0_raft_diverged"); g != 1 {
		t.Fatalf("tier0_raft_diverged = %v", g)
	}
	t.Logf("diverged: %s", body)
}

// TestCorruptJournalRecord: one hex digit of a record's serial flipped in
// the raft-wal segment of a stopped single node: on start it replays into
// the integrity check, latches diverged (readyz names the index, one log
// line, the gauge), serves no API (mint answers Unavailable), and chains
// nothing: the record store keeps exactly the records it had, which verify.
// The runbook's repair for a single node (restore the last backup against
// the store) brings it back, continuing the store's chain.
func TestCorruptJournalRecord(t *testing.T) {
	data := t.TempDir()
	srv := startServer(t, data)
	const id = "spiffe://example.org/journal"
	svid := agentSVID(t, srv, "journal-1", id)
	ag := clientAs(t, srv, svid)
	csr := csrFor(t, p256(t), []string{id}, nil, nil)
	bak := filepath.Join(t.TempDir(), "b.tier0")
	must(srv.cli("backup", "create", "--out", bak))
	first := mustMint(t, ag, csr, 1)[0]
	for range 5 { // later entries, so that the altered one is not the last commit (see ha/DESIGN.md "Integrity")
		mustMint(t, ag, csr, 4)
	}
	waitExported(t, srv)
	dsn := "sqlite:" + filepath.Join(data, "records.db")
	last := storeLast(t, dsn)
	srv.stop()

	flipInWAL(t, data, `"serial":"`+first+`"`)
	srv.launch()
	checkDiverged(t, srv)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := mintSerials(ctx, ag, csr, 1); status.Code(err) != codes.Unavailable {
		t.Fatalf("mint on a diverged node: %v, want Unavailable", err)
	}
	if got := storeLast(t, dsn); got != last {
		t.Fatalf("record store at seq %d, was %d", got, last)
	}
	st, err := storage.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if res, err := storage.Verify(context.Background(), st, 1, 0); err != nil || !res.OK() || res.Checked != last {
		t.Fatalf("store verify: %+v %v", res, err)
	}

	// Repair: restore the backup, caught up from the store.
	srv.stop()
	must(runBin("tier0", "backup", "restore", "--from", bak, "--data-dir", data, "--store", dsn, "--force"))
	srv.start()
	mustMint(t, clientAs(t, srv, svid), csr, 2) // the restored node listens on a new port
	waitExported(t, srv)
	if res, err := storage.Verify(context.Background(), st, 1, 0); err != nil || !res.OK() || res.Checked < last+2 {
		t.Fatalf("store verify after the repair: %+v %v (was at %d)", res, err, last)
	}
}

// TestClusterRepairCorruptFollower: the same flip in a follower's raft log
// latches that follower only; the others keep issuing; wiping its raft
// directory (docs/OPERATIONS.md) lets it catch up from the leader, and it
// issues again; the bootstrap node repairs the same way with --join; every
// SVID is recorded once in a chain that verifies.
func TestClusterRepairCorruptFollower(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader()
	f := 1 // a follower that joined (node1 bootstrapped: see the runbook for it)
	if f == leader {
		f = 2
	}
	const id = "spiffe://example.org/journal-cluster"
	ag := c.agent("journal-c", id)
	csr := csrFor(t, p256(t), []string{id}, nil, nil)
	received := map[string]time.Time{}
	keep := func(ss []string) {
		for _, s := range ss {
			received[s] = time.Now()
		}
	}
	firstBatch := mustMint(t, ag, csr, 1)
	keep(firstBatch)
	for range 5 {
		keep(mustMint(t, ag, csr, 4))
	}
	lp, fp := c.nodes[leader], c.nodes[f]
	pollUntil(t, 30*time.Second, func() bool {
		return metricInt(t, fp, "tier0_journal_seq") >= metricInt(t, lp, "tier0_journal_seq")
	})
	fp.stop()
	flipInWAL(t, fp.dataDir, `"serial":"`+firstBatch[0]+`"`)
	fp.launch()
	checkDiverged(t, fp)
	for range 3 { // the client fails over to the healthy nodes
		keep(mustMint(t, ag, csr, 4))
	}

	// Repair: stop, wipe the raft directory, start; it catches up.
	fp.stop()
	if err := os.RemoveAll(filepath.Join(fp.dataDir, "raft")); err != nil {
		t.Fatal(err)
	}
	fp.start()
	pollUntil(t, 60*time.Second, func() bool {
		return fp.metric(t, "tier0_raft_diverged") == 0 && metricInt(t, fp, "tier0_journal_seq") >= metricInt(t, c.nodes[c.leader()], "tier0_journal_seq")
	})
	only := c.client(c.agentSVID("journal-r", id, []string{c.apis[f]}), []string{c.apis[f]})
	keep(mustMint(t, only, csr, 4))

	// The node that bootstrapped the cluster repairs the same way, started
	// once with --join (else an empty raft dir would bootstrap a new cluster).
	if c.leader() == 0 {
		must(c.nodes[f].cli("cluster", "transfer-leadership", "--to", nodeName(f)))
		pollUntil(t, 60*time.Second, func() bool { return c.leader() != 0 })
	}
	boot := c.nodes[0]
	boot.stop()
	if err := os.RemoveAll(filepath.Join(boot.dataDir, "raft")); err != nil {
		t.Fatal(err)
	}
	boot.args = append(boot.args, "--join", c.apis[f])
	boot.start()
	pollUntil(t, 60*time.Second, func() bool {
		return metricInt(t, boot, "tier0_journal_seq") >= metricInt(t, c.nodes[c.leader()], "tier0_journal_seq")
	})
	if st := must(boot.cli("cluster", "status", "-o", "json")); strings.Count(st, `"suffrage": "Voter"`)+strings.Count(st, `"suffrage":"Voter"`) != 3 {
		t.Fatalf("cluster after the bootstrap node's repair: %s", st)
	}
	only = c.client(c.agentSVID("journal-b", id, []string{c.apis[0]}), []string{c.apis[0]})
	keep(mustMint(t, only, csr, 4))
	c.checkRecords(&issuer{t: t, received: received})
}

// mountTmpfs mounts a tmpfs of size bytes (root only; under `make test` a
// failure to mount fails the test) and unmounts it at cleanup, after the
// cleanups registered later (the server) have run.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		if testenv.Strict() {
			t.Fatalf("mount tmpfs (the disk-full test needs root): %v", err)
		}
		t.Skipf("mount tmpfs: %v (run as root, as `make test` does in CI)", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes dir/filler until the file system is full, then gives
// back leave bytes.
func fillDisk(t *testing.T, dir string, leave int64) string {
	t.Helper()
	name := filepath.Join(dir, "filler")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	for _, n := range []int{4096, 512, 1} { // the last partial pages
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(st.Size() - leave); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestJournalDiskFull: the data directory on a small tmpfs that fills up,
// with 512 KiB left, less than a raft log segment (2 MiB here, preallocated).
// Issuance goes on until the segment is full; raft-wal cannot create the
// next one and stays stuck on its sealed tail, which the log store reopens
// (the tail is then written without preallocation) until the space is
// gone too. From then on mints answer Unavailable naming the cause (never
// "not the leader"), /readyz says so, the metrics show it, one ERROR line.
// When space returns, issuance resumes by itself; every SVID received is
// recorded once, in a chain that verifies.
func TestJournalDiskFull(t *testing.T) {
	mnt := mountTmpfs(t, 16<<20)
	data := filepath.Join(mnt, "data")
	store := "sqlite:" + filepath.Join(t.TempDir(), "records.db") // the store is not what fills up here
	srv := startServer(t, data, "--store", store, "--raft-wal-segment-size-mb", "2")
	const id = "spiffe://example.org/disk"
	ag := agentClient(t, srv, "disk-1", id)
	csr := csrFor(t, p256(t), []string{id}, nil, nil)
	received := map[string]bool{}
	mint := func(n int) error { // records what was received
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ss, err := mintSerials(ctx, ag, csr, n)
		for _, s := range ss {
			received[s] = true
		}
		return err
	}
	const cause = "journal write failed: "
	checkCause := func(err error) {
		t.Helper()
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), cause) ||
			!strings.Contains(err.Error(), "no space left on device") || strings.Contains(err.Error(), "not the leader") {
			t.Fatalf("mint on a full disk: %v", err)
		}
	}
	filler := fillDisk(t, mnt, 512<<10)

	var failed error
	deadline := time.Now().Add(2 * time.Minute)
	for failed == nil {
		if time.Now().After(deadline) {
			t.Fatalf("still issuing after %d SVIDs on a full disk", len(received))
		}
		failed = mint(64)
	}
	t.Logf("%d SVIDs issued before the log filled its segment; then: %v", len(received), failed)
	checkCause(failed)
	if code, body := getReadyz(srv); code != http.StatusServiceUnavailable || !strings.Contains(body, "raft log: ha: "+cause) || !strings.Contains(body, "no space left on device") {
		t.Fatalf("/readyz on a full disk: %d %q", code, body)
	}
	if f, e := srv.metric(t, "tier0_journal_write_failing"), srv.metric(t, "tier0_journal_write_errors_total"); f != 1 || e < 1 {
		t.Fatalf("tier0_journal_write_failing %v, tier0_journal_write_errors_total %v", f, e)
	}
	if !strings.Contains(srv.log.String(), "ha: wal reopened after a failed segment rotation") {
		t.Fatalf("the failed segment rotation was not met:\n%s", srv.log.String())
	}
	// The single node steps down at each failed write and is elected again
	// (its term and vote still persist; a small write may still fit in the
	// last page): through several elections every failed mint names the
	// cause and the node stays not ready.
	pollUntil(t, 60*time.Second, func() bool {
		if err := mint(1); err != nil {
			checkCause(err)
		}
		if code, body := getReadyz(srv); code != http.StatusServiceUnavailable || !strings.Contains(body, "no space left on device") {
			t.Fatalf("/readyz on a full disk: %d %q", code, body)
		}
		return strings.Count(srv.log.String(), "raft: failed to commit logs") >= 3
	})
	if n := strings.Count(srv.log.String(), "JOURNAL WRITE FAILED"); n != 1 {
		t.Fatalf("%d JOURNAL WRITE FAILED lines, want 1:\n%s", n, srv.log.String())
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, 60*time.Second, func() bool { return mint(4) == nil })
	// Ready again once writes have succeeded for a few seconds.
	pollUntil(t, 60*time.Second, func() bool {
		code, _ := getReadyz(srv)
		return code == http.StatusOK && srv.metric(t, "tier0_journal_write_failing") == 0
	})
	// Every SVID received is in the store once, and the chain verifies.
	st, err := storage.Open(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pollUntil(t, 60*time.Second, func() bool {
		seen := map[string]int{}
		if err := st.Range(context.Background(), 1, 0, func(r *record.Record) error { seen[r.Serial]++; return nil }); err != nil {
			return false
		}
		for s := range received {
			if seen[s] != 1 {
				return false
			}
		}
		return true
	})
	if res, err := storage.Verify(context.Background(), st, 1, 0); err != nil || !res.OK() {
		t.Fatalf("store verify: %+v %v", res, err)
	}
}
