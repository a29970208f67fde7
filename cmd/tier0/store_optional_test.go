package main

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/internal/server"
	"github.com/tier0-ca/tier0/internal/testenv"
)

// TestStoreOptionalPostgresDownAtStart starts a server with --store-optional
// while its Postgres is stopped: it must start and issue, answer audit
// queries Unavailable, and once Postgres is up export every record (schema
// migrated then) so that `tier0 audit verify` passes. Without the flag the
// server refuses to start.
func TestStoreOptionalPostgresDownAtStart(t *testing.T) {
	pg := testenv.StartPrivatePostgres(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE optional_a"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	dsn := pg.DSN("optional_a")
	pg.Stop()

	// Default: fail fast with the clear error.
	_, err = runBin("tier0", "server", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--store", dsn)
	if err == nil || !strings.Contains(err.Error(), "record store: cannot open") {
		t.Fatalf("server without --store-optional and Postgres down: %v, want it to refuse to start", err)
	}

	srv := startServer(t, t.TempDir(), "--store", dsn, "--store-optional", "--checkpoint-every", "10", "--checkpoint-interval", "500ms")
	if !strings.Contains(srv.log.String(), "RECORD STORE UNREACHABLE AT START") {
		t.Errorf("no loud log line about the unreachable store:\n%s", srv.log.String())
	}
	id := "spiffe://example.org/optional"
	ag := agentClient(t, srv, "optional-1", id)
	serials := map[string]bool{}
	for range 20 {
		resp, err := ag.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{
			{Csr: csrFor(t, p256(t), []string{id}, nil, nil)}, {Csr: csrFor(t, p256(t), []string{id}, nil, nil)}}})
		if err != nil {
			t.Fatalf("mint while the store is down: %v", err)
		}
		for _, r := range resp.GetResults() {
			if r.GetError() != nil {
				t.Fatalf("mint item while the store is down: %v", r.GetError())
			}
			leaf, err := x509.ParseCertificate(r.GetChain()[0])
			if err != nil {
				t.Fatal(err)
			}
			serials[leaf.SerialNumber.Text(16)] = true
		}
	}
	waitUntil(t, "export lag to show the unexported records", 30*time.Second, func() bool {
		return srv.metric(t, "tier0_export_lag_records") > 0
	})
	if out, err := srv.cli("audit", "list", "--spiffe-id", id, "-o", "json"); err == nil || !strings.Contains(err.Error(), "Unavailable") || !strings.Contains(err.Error(), "not connected yet") {
		t.Errorf("audit list while the store is down: %v (output %q), want Unavailable", err, out)
	}

	pg.Start()
	waitUntil(t, "the background connect", 60*time.Second, func() bool {
		return strings.Contains(srv.log.String(), "record store connected")
	})
	seq := srv.metric(t, "tier0_journal_seq")
	s, err := server.OpenStore(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	waitUntil(t, "export to catch up", 60*time.Second, func() bool {
		last, err := s.LastSeq(ctx)
		return err == nil && float64(last) >= seq
	})
	stored := map[string]int{}
	if err := s.Range(ctx, 1, 0, func(r *record.Record) error { stored[r.Serial]++; return nil }); err != nil {
		t.Fatal(err)
	}
	for serial := range serials {
		if stored[serial] != 1 {
			t.Errorf("serial %s stored %d times, want once", serial, stored[serial])
		}
	}
	out, err := srv.cli("audit", "verify", "--allow-unverified-tail", "-o", "json")
	if err != nil || !parseVerify(t, out).OK {
		t.Fatalf("verify after the store came up: %v\n%s", err, out)
	}
}
