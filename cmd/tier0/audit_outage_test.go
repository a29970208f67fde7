package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/internal/server"
	"github.com/tier0-ca/tier0/internal/testenv"
)

// privatePG starts a Postgres of this test's own with two databases: the
// outage test stops it, which must never happen to the shared server other
// packages' tests are using at the same time.
func privatePG(t *testing.T) (pg *testenv.PrivatePostgres, dsnA, dsnB string) {
	t.Helper()
	pg = testenv.StartPrivatePostgres(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, db := range []string{"outage_a", "outage_b"} {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
			t.Fatal(err)
		}
	}
	return pg, pg.DSN("outage_a"), pg.DSN("outage_b")
}

func (p *proc) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.info.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// minter mints in the background and keeps every serial it received.
type minter struct {
	mu       sync.Mutex
	serials  map[string]bool
	failures int
	lastErr  error
}

func (m *minter) count() int { m.mu.Lock(); defer m.mu.Unlock(); return len(m.serials) }

func (m *minter) run(ctx context.Context, t *testing.T, ag *client.Client, id string, csrs [][]byte) {
	for i := 0; ctx.Err() == nil; i++ {
		items := []*tier0v1.MintItem{{Csr: csrs[i%len(csrs)]}, {Csr: csrs[(i+1)%len(csrs)]}}
		resp, err := ag.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: items})
		if ctx.Err() != nil {
			return // canceled at the end of the test
		}
		m.mu.Lock()
		if err != nil {
			m.failures++
			m.lastErr = err
		}
		for _, r := range resp.GetResults() {
			if r.GetError() != nil {
				m.failures++
				continue
			}
			leaf, err := x509.ParseCertificate(r.GetChain()[0])
			if err != nil {
				t.Error(err)
				continue
			}
			m.serials[leaf.SerialNumber.Text(16)] = true
		}
		m.mu.Unlock()
	}
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

// TestAuditPostgresOutage stops Postgres while a server with --store
// postgres issues, checks that issuance goes on (and that a fail-closed
// server with a tiny --max-unexported refuses with Unavailable), restarts
// Postgres and checks that every record arrives exactly once.
func TestAuditPostgresOutage(t *testing.T) {
	pg, dsnA, dsnB := privatePG(t)
	stopPG, startPG := pg.Stop, pg.Start

	srv := startServer(t, t.TempDir(), "--store", dsnA, "--checkpoint-every", "50", "--checkpoint-interval", "500ms")
	fc := startServer(t, t.TempDir(), "--store", dsnB, "--max-unexported", "8", "--on-journal-full", "fail-closed")
	id := "spiffe://example.org/outage"
	ag := agentClient(t, srv, "outage-1", id)
	fcAgent := agentClient(t, fc, "outage-2", id)
	csrs := make([][]byte, 16)
	for i := range csrs {
		csrs[i] = csrFor(t, p256(t), []string{id}, nil, nil)
	}
	m := &minter{serials: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); m.run(ctx, t, ag, id, csrs) }()
	}
	waitUntil(t, "100 SVIDs before the outage", 30*time.Second, func() bool { return m.count() >= 100 })

	stopPG()
	before := m.count()
	waitUntil(t, "300 SVIDs during the outage", 60*time.Second, func() bool { return m.count() >= before+300 })
	waitUntil(t, "the outage log line", 30*time.Second, func() bool {
		return strings.Contains(srv.log.String(), "RECORD STORE UNAVAILABLE")
	})
	if lag := srv.metric(t, "tier0_export_lag_records"); lag <= 0 {
		t.Errorf("tier0_export_lag_records = %v during the outage", lag)
	}
	// Audit queries during the outage: Unavailable (retryable, the store's
	// fault is named), never Internal.
	for _, args := range [][]string{{"audit", "list", "--limit", "5"}, {"audit", "decisions"}, {"audit", "verify", "--allow-unverified-tail"}} {
		out, err := srv.cli(args...)
		if err == nil || !strings.Contains(err.Error(), "Unavailable") || !strings.Contains(err.Error(), "record store unavailable") {
			t.Errorf("%v while Postgres is stopped: %v (output %q), want Unavailable naming the store", args, err, out)
		}
	}
	// A denial during the outage is held in memory and written later.
	if _, err := ag.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{
		{Csr: csrFor(t, p256(t), []string{"spiffe://example.org/not-granted"}, nil, nil)}}}); err != nil {
		t.Fatal(err)
	}
	// Fail-closed: once 8 records wait, mint answers Unavailable.
	fcMint := func() string { // "" on success, else the call's or the item's error
		resp, err := fcAgent.Agent().MintX509SVIDs(context.Background(), &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: csrs[0]}}})
		if err != nil {
			return err.Error()
		}
		if e := resp.GetResults()[0].GetError(); e != nil {
			return fmt.Sprintf("%v: %s", codes.Code(e.GetCode()), e.GetMessage())
		}
		return ""
	}
	var fcErr string
	waitUntil(t, "fail-closed refusal", 30*time.Second, func() bool { fcErr = fcMint(); return fcErr != "" })
	if !strings.Contains(fcErr, "Unavailable") || !strings.Contains(fcErr, "journal full") {
		t.Errorf("fail-closed error = %s, want Unavailable naming the full journal", fcErr)
	}
	if !strings.Contains(fc.log.String(), "JOURNAL FULL") {
		t.Error("no JOURNAL FULL log line")
	}
	waitHealth(t, fc, fc.info.HTTP, "/readyz", http.StatusServiceUnavailable, "journal full: more than 8 issued records wait")

	startPG()
	waitUntil(t, "200 SVIDs after the outage", 60*time.Second, func() bool { return m.count() >= before+500 })
	cancel()
	wg.Wait()
	waitUntil(t, "fail-closed server issuing again", 60*time.Second, func() bool { return fcMint() == "" })
	waitHealth(t, fc, fc.info.HTTP, "/readyz", http.StatusOK, "ok: leader")

	// Exactly once: the store catches up to the journal, with every serial once.
	seq := srv.metric(t, "tier0_journal_seq")
	s, err := server.OpenStore(context.Background(), dsnA)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	waitUntil(t, "export to catch up", 60*time.Second, func() bool {
		last, err := s.LastSeq(context.Background())
		return err == nil && float64(last) >= seq
	})
	stored := map[string]int{}
	rows := 0
	if err := s.Range(context.Background(), 1, 0, func(r *record.Record) error {
		stored[r.Serial]++
		rows++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	last, _ := s.LastSeq(context.Background())
	if uint64(rows) != last {
		t.Fatalf("store has %d rows but last seq %d", rows, last)
	}
	for serial := range m.serials {
		if stored[serial] != 1 {
			t.Fatalf("serial %s stored %d times", serial, stored[serial])
		}
	}
	t.Logf("issued %d SVIDs (%d during the outage), %d rows stored", m.count(), m.count()-before, rows)
	if m.failures != 0 {
		t.Errorf("%d mint calls failed with keep-issuing (last: %v)", m.failures, m.lastErr)
	}
	out, err := srv.cli("audit", "verify", "--allow-unverified-tail", "-o", "json")
	if err != nil || !parseVerify(t, out).OK {
		t.Fatalf("verify after the outage: %v\n%s", err, out)
	}
	waitUntil(t, "the denial recorded", 30*time.Second, func() bool {
		out, err := srv.cli("audit", "decisions", "--denied", "-o", "json")
		return err == nil && strings.Contains(out, "spiffe://example.org/not-granted")
	})
}
