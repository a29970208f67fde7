package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/internal/server"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

// auditBackend is a record store the server writes to and a test edits
// behind its back, as an attacker with SQL access would.
type auditBackend struct {
	dsn  string
	exec func(t *testing.T, q string)
	// copyTo clones the good store into a fresh one and returns its DSN
	// and an exec for it.
	copyTo func(t *testing.T, name string) (string, func(t *testing.T, q string))
}

func sqliteBackend(t *testing.T) auditBackend {
	path := filepath.Join(t.TempDir(), "records.db")
	execAt := func(p string) func(t *testing.T, q string) {
		return func(t *testing.T, q string) { t.Helper(); execSQLite(t, p, q) }
	}
	b := auditBackend{dsn: "sqlite:" + path, exec: execAt(path)}
	b.copyTo = func(t *testing.T, name string) (string, func(t *testing.T, q string)) {
		p := filepath.Join(t.TempDir(), name+".db")
		execAt(path)(t, fmt.Sprintf("VACUUM INTO '%s'", p))
		return "sqlite:" + p, execAt(p)
	}
	return b
}

func execSQLite(t *testing.T, path, q string) {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func postgresBackend(t *testing.T) auditBackend {
	base, schema := storagetest.PostgresSchema(t)
	withSchema := func(s string) string {
		sep := "?"
		if strings.Contains(base, "?") {
			sep = "&"
		}
		return base + sep + "search_path=" + s
	}
	execIn := func(s string) func(t *testing.T, q string) {
		return func(t *testing.T, q string) {
			t.Helper()
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, withSchema(s))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	b := auditBackend{dsn: withSchema(schema), exec: execIn(schema)}
	b.copyTo = func(t *testing.T, _ string) (string, func(t *testing.T, q string)) {
		_, s := storagetest.PostgresSchema(t)
		for _, tbl := range []string{"schema_version", "issuance_records", "audit_checkpoints", "authz_decisions", "store_lineage", "tree_checkpoints", "decision_checkpoints"} {
			cols := pgCopyColumns(t, withSchema(schema), schema, tbl)
			execIn(s)(t, fmt.Sprintf("CREATE TABLE %s.%s (LIKE %s.%s INCLUDING ALL); INSERT INTO %s.%s (%s) SELECT %s FROM %s.%s",
				s, tbl, schema, tbl, s, tbl, cols, cols, schema, tbl))
		}
		return withSchema(s), execIn(s)
	}
	return b
}

type verifyOut struct {
	OK          bool   `json:"ok"`
	To          uint64 `json:"to"`
	Checked     uint64 `json:"checked"`
	FirstBad    uint64 `json:"first_bad_seq"`
	Problem     string `json:"problem"`
	Detail      string `json:"detail"`
	Checkpoints int    `json:"checkpoints"`
	LastCP      uint64 `json:"last_checkpoint_seq"`
	// The decision chain.
	Decisions        uint64 `json:"decisions_checked"`
	DecisionCPs      int    `json:"decision_checkpoints"`
	DecisionFirstBad uint64 `json:"decision_first_bad"`
}

func parseVerify(t *testing.T, out string) verifyOut {
	t.Helper()
	var v verifyOut
	line := out
	if i := strings.Index(out, "{"); i >= 0 {
		line = out[i:]
		if j := strings.Index(line, "\n"); j >= 0 {
			line = line[:j]
		}
	}
	if err := json.Unmarshal([]byte(line), &v); err != nil {
		t.Fatalf("verify output %q: %v", out, err)
	}
	return v
}

// issueMix mints n X509-SVIDs (in batches of 4) and a few JWT-SVIDs.
func issueMix(t *testing.T, ag *client.Client, id string, n int) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	issued := 0
	for issued < n {
		items := make([]*tier0v1.MintItem, 4)
		for i := range items {
			items[i] = &tier0v1.MintItem{Csr: csrFor(t, p256(t), []string{id}, nil, nil)}
		}
		if _, err := ag.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: items}); err != nil {
			t.Fatalf("mint: %v", err)
		}
		issued += 4
		if issued%12 == 0 {
			if _, err := ag.Agent().MintJWTSVID(ctx, &tier0v1.MintJWTSVIDRequest{SpiffeId: id, Audience: []string{"db"}}); err != nil {
				t.Fatalf("mint jwt: %v", err)
			}
			issued++
		}
	}
	return issued
}

// TestAuditVerifyNewestCheckpointDeleted: no later checkpoint names the
// newest one, so only the journal can tell that it was deleted: online
// verify (through the server) reports it; offline verify of the store
// alone cannot (documented in docs/AUDIT.md).
func TestAuditVerifyNewestCheckpointDeleted(t *testing.T) {
	b := sqliteBackend(t)
	srv := startServer(t, t.TempDir(), "--store", b.dsn, "--checkpoint-every", "10", "--checkpoint-interval", "300ms")
	ag := agentClient(t, srv, "audit-1", "spiffe://example.org/audit")
	n := issueMix(t, ag, "spiffe://example.org/audit", 30)
	var v verifyOut
	pollUntil(t, 30*time.Second, func() bool {
		out, err := srv.cli("audit", "verify", "--allow-unverified-tail", "-o", "json")
		if err != nil {
			return false
		}
		v = parseVerify(t, out)
		return v.OK && v.To >= uint64(n) && v.LastCP == v.To
	})
	b.exec(t, fmt.Sprintf("DELETE FROM audit_checkpoints WHERE seq = %d", v.LastCP))
	// Polled: the journal marks a checkpoint exported just after the store
	// has it, so for a moment it may still name the one before.
	var got verifyOut
	pollUntil(t, 20*time.Second, func() bool {
		out, err := srv.cli("audit", "verify", "--allow-unverified-tail", "-o", "json")
		got = parseVerify(t, out)
		return err != nil && !got.OK
	})
	if got.FirstBad != v.LastCP || got.Problem != "missing checkpoint" {
		t.Fatalf("online verify after deleting the newest checkpoint %d: %+v", v.LastCP, got)
	}
	// Cutting the end of the store too (the last records with their
	// checkpoint) is reported as records missing after the new end.
	cut := v.LastCP - 5
	b.exec(t, fmt.Sprintf("DELETE FROM issuance_records WHERE seq > %d", cut))
	out, err := srv.cli("audit", "verify", "--allow-unverified-tail", "-o", "json")
	got = parseVerify(t, out)
	if err == nil || got.OK || got.FirstBad != cut+1 || got.Problem != "missing" {
		t.Fatalf("online verify after cutting the store at %d: %v %+v", cut, err, got)
	}
}

// TestAuditVerifyTamperCLI issues SVIDs and JWT-SVIDs through a real
// server, checks `tier0 audit verify` online and offline, then edits
// copies of the store with SQL, one kind of edit each, and checks that
// offline verify fails and names the seq and the problem.
func TestAuditVerifyTamperCLI(t *testing.T) {
	for _, be := range []struct {
		name string
		open func(t *testing.T) auditBackend
	}{{"sqlite", sqliteBackend}, {"postgres", postgresBackend}} {
		t.Run(be.name, func(t *testing.T) {
			b := be.open(t)
			data := t.TempDir()
			srv := startServer(t, data, "--store", b.dsn, "--checkpoint-every", "10", "--checkpoint-interval", "300ms")
			ag := agentClient(t, srv, "audit-1", "spiffe://example.org/audit")
			n := issueMix(t, ag, "spiffe://example.org/audit", 60)
			if n < 60 {
				t.Fatalf("issued %d", n)
			}
			// Wait until the store holds every record and a checkpoint covers the last.
			var v verifyOut
			deadline := time.Now().Add(30 * time.Second)
			for {
				out, err := srv.cli("audit", "verify", "--allow-unverified-tail", "-o", "json")
				if err == nil {
					v = parseVerify(t, out)
					if v.OK && v.To >= uint64(n) && v.LastCP == v.To && v.Decisions >= uint64(n) && v.DecisionCPs > 0 {
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("online verify never covered %d records with a checkpoint: %v %+v", n, err, v)
				}
				time.Sleep(100 * time.Millisecond) // polling interval
			}
			if v.Checkpoints < 3 {
				t.Fatalf("only %d checkpoints for %d records", v.Checkpoints, v.To)
			}
			checkAdminEvents(t, srv)
			checkShowChain(t, srv, "spiffe://example.org/audit")
			last := v.To
			srv.stop()

			bundle := filepath.Join(data, "bundle.pem")
			out, err := runBin("tier0", "audit", "verify", "--allow-unverified-tail", "--store", b.dsn, "--bundle", bundle, "-o", "json")
			if err != nil || !parseVerify(t, out).OK {
				t.Fatalf("offline verify of the intact store: %v\n%s", err, out)
			}
			cps, jwtSeq, adminSeq := storeFacts(t, b, last)
			cp2 := cps[1]
			tests := []struct {
				name     string
				sql      []string
				firstBad uint64
				problem  string
			}{
				{"record modified", []string{"UPDATE issuance_records SET spiffe_id = 'spiffe://example.org/evil' WHERE seq = 17"}, 17, "modified"},
				{"jwt record modified", []string{fmt.Sprintf("UPDATE issuance_records SET agent_id = 'spiffe://example.org/x' WHERE seq = %d", jwtSeq)}, jwtSeq, "modified"},
				{"record deleted", []string{"DELETE FROM issuance_records WHERE seq = 17"}, 17, "missing"},
				{"deleted admin-event record", []string{fmt.Sprintf("DELETE FROM issuance_records WHERE seq = %d", adminSeq)}, adminSeq, "missing"},
				{"admin-event record edited", []string{fmt.Sprintf("UPDATE issuance_records SET event_action = 'entry.delete' WHERE seq = %d", adminSeq)}, adminSeq, "modified"},
				{"records deleted at the end", []string{fmt.Sprintf("DELETE FROM issuance_records WHERE seq > %d", last-3)}, last - 2, "missing"},
				{"record inserted", []string{
					"UPDATE issuance_records SET seq = seq + 1000000 WHERE seq >= 17",
					"UPDATE issuance_records SET seq = seq - 1000000 + 1 WHERE seq >= 1000000",
					`INSERT INTO issuance_records (seq, serial, spiffe_id, agent_id, not_before, not_after, issuer_key_id, public_key_sha256, node_id, committed_at, cert_der, prev_hash, hash)
					 SELECT 17, serial || 'ff', spiffe_id, agent_id, not_before, not_after, issuer_key_id, public_key_sha256, node_id, committed_at, cert_der, hash, hash FROM issuance_records WHERE seq = 16`,
				}, 17, "inserted"},
				{"records swapped", []string{
					"UPDATE issuance_records SET seq = 1000000 WHERE seq = 20",
					"UPDATE issuance_records SET seq = 20 WHERE seq = 21",
					"UPDATE issuance_records SET seq = 21 WHERE seq = 1000000",
				}, 20, "reordered"},
				{"checkpoint head edited", []string{fmt.Sprintf("UPDATE audit_checkpoints SET head = (SELECT hash FROM issuance_records WHERE seq = 1) WHERE seq = %d", cp2)}, cp2, "forged checkpoint"},
				{"checkpoint signature edited", []string{fmt.Sprintf("UPDATE audit_checkpoints SET signature = (SELECT hash FROM issuance_records WHERE seq = 2) WHERE seq = %d", cp2)}, cp2, "forged checkpoint"},
				{"checkpoint deleted", []string{fmt.Sprintf("DELETE FROM audit_checkpoints WHERE seq = %d", cp2)}, cp2, "missing checkpoint"},
				{"checkpoint link edited", []string{fmt.Sprintf("UPDATE audit_checkpoints SET prev_seq = 0 WHERE seq = %d", cps[2])}, cps[2], "forged checkpoint"},
				// The decision chain (first bad: the decision's seq).
				{"deleted decision", []string{"DELETE FROM authz_decisions WHERE chain_seq = 5"}, 5, "deleted decision"},
				{"edited decision", []string{"UPDATE authz_decisions SET reason = 'entry forged' WHERE chain_seq = 3"}, 3, "edited decision"},
			}
			t.Run("pruned", func(t *testing.T) {
				dsn, _ := b.copyTo(t, "pruned")
				out, err := runBin("tier0", "storage", "prune", "--store", dsn, "--before", "0s", "--yes")
				if err != nil || !strings.Contains(out, "pruned") {
					t.Fatalf("prune: %v %s", err, out)
				}
				out, err = runBin("tier0", "audit", "verify", "--allow-unverified-tail", "--store", dsn, "--bundle", bundle, "-o", "json")
				var v struct {
					OK     bool   `json:"ok"`
					Anchor uint64 `json:"anchor_seq"`
				}
				_ = json.Unmarshal([]byte(out), &v)
				if err != nil || !v.OK || v.Anchor == 0 {
					t.Fatalf("verify after prune: %v %s", err, out)
				}
			})
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					dsn, exec := b.copyTo(t, strings.ReplaceAll(tc.name, " ", "-"))
					for _, q := range tc.sql {
						exec(t, q)
					}
					out, err := runBin("tier0", "audit", "verify", "--allow-unverified-tail", "--store", dsn, "--bundle", bundle, "-o", "json")
					if err == nil {
						t.Fatalf("verify succeeded on a tampered store:\n%s", out)
					}
					v := parseVerify(t, out)
					if strings.HasSuffix(tc.problem, " decision") {
						if v.DecisionFirstBad != tc.firstBad || v.Problem != tc.problem || v.FirstBad != 0 ||
							!strings.Contains(err.Error(), fmt.Sprintf("audit verify FAILED: decision %d: %s", tc.firstBad, tc.problem)) {
							t.Fatalf("verify = decision %d %q (%s), %v; want decision %d %q", v.DecisionFirstBad, v.Problem, v.Detail, err, tc.firstBad, tc.problem)
						}
						return
					}
					if v.FirstBad != tc.firstBad || v.Problem != tc.problem {
						t.Fatalf("verify = seq %d %q (%s), want seq %d %q", v.FirstBad, v.Problem, v.Detail, tc.firstBad, tc.problem)
					}
					if !strings.Contains(err.Error(), fmt.Sprintf("audit verify FAILED: seq %d: %s", tc.firstBad, tc.problem)) {
						t.Fatalf("error line does not name the seq: %v", err)
					}
				})
			}
		})
	}
}

// storeFacts reads the checkpoint seqs (at least 3), the seq of a
// JWT-SVID record and that of the last admin event record after seq 1
// from the backend's store (the server is stopped).
func storeFacts(t *testing.T, b auditBackend, last uint64) (cps []uint64, jwtSeq, adminSeq uint64) {
	t.Helper()
	ctx := context.Background()
	s, err := server.OpenStore(ctx, b.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Checkpoints(ctx, 1, last)
	if err != nil || len(got) < 3 {
		t.Fatalf("checkpoints: %d, %v", len(got), err)
	}
	for _, c := range got {
		cps = append(cps, c.Seq)
	}
	err = s.Range(ctx, 1, last, func(r *record.Record) error {
		if jwtSeq == 0 && r.Kind() == record.KindJWT {
			jwtSeq = r.Seq
		}
		if r.IsEvent() && r.Seq > 1 {
			adminSeq = r.Seq
		}
		return nil
	})
	if err != nil || jwtSeq == 0 || adminSeq == 0 {
		t.Fatalf("no JWT-SVID (%d) or admin event (%d) record among %d: %v", jwtSeq, adminSeq, last, err)
	}
	return cps, jwtSeq, adminSeq
}

// pgCopyColumns lists the columns of schema.tbl a copy can write: every
// column but the generated ones (Postgres computes those itself).
func pgCopyColumns(t *testing.T, dsn, schema, tbl string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT column_name FROM information_schema.columns
		WHERE table_schema = $1 AND table_name = $2 AND is_generated = 'NEVER' ORDER BY ordinal_position`, schema, tbl)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(names) == 0 {
		t.Fatalf("columns of %s.%s: %v %v", schema, tbl, names, err)
	}
	return strings.Join(names, ", ")
}
