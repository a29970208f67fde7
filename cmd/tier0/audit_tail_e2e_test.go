package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

// TestAuditVerifyForgedTailCLI: a record appended to the store behind the
// server's back, correctly chained after the newest checkpoint, passes the
// chain and the checkpoints; online verify catches it against the journal
// ("not in journal"), and offline verify reports it as an unverified tail
// and exits non-zero unless --allow-unverified-tail. The real records
// (X.509 and JWT-SVIDs) pass the certificate checks.
func TestAuditVerifyForgedTailCLI(t *testing.T) {
	b := sqliteBackend(t)
	data := t.TempDir()
	srv := startServer(t, data, "--store", b.dsn, "--checkpoint-every", "10", "--checkpoint-interval", "300ms")
	ag := agentClient(t, srv, "tail-1", "spiffe://example.org/tail")
	n := issueMix(t, ag, "spiffe://example.org/tail", 24)
	var v verifyOut
	pollUntil(t, 30*time.Second, func() bool {
		out, err := srv.cli("audit", "verify", "-o", "json")
		if err != nil {
			return false
		}
		v = parseVerify(t, out)
		return v.OK && v.To >= uint64(n) && v.LastCP == v.To
	})
	// JSON lines carry the kind, the canonical serial and, for JWT-SVIDs,
	// the jti, the signing key and the token's hash.
	var jwts int
	for _, line := range strings.Split(strings.TrimSpace(must(srv.cli("audit", "list", "-o", "json", "--spiffe-id", "spiffe://example.org/tail"))), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if m["kind"] == "admin" { // the entry's creation (an admin event about this SPIFFE ID)
			if m["event_action"] != "entry.create" || m["agent_id"] != "spiffe://example.org/tier0/admin" {
				t.Fatalf("admin event: %v", m)
			}
			continue
		}
		if m["kind"] == "jwt" {
			jwts++
			if m["jti"] != m["serial"] || m["jwt_kid"] == "" || m["jwt_token_sha256"] != m["public_key_sha256"] {
				t.Fatalf("JWT-SVID record: %v", m)
			}
		} else if m["kind"] != "x509" || m["jti"] != "" || m["serial_hex"] == "" {
			t.Fatalf("X.509 record: %v", m)
		}
	}
	if jwts == 0 {
		t.Fatal("no JWT-SVID record listed")
	}
	ctx := context.Background()
	st, err := storage.Open(ctx, b.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	last, err := st.Query(ctx, storage.Filter{Limit: 1})
	if err != nil || len(last) != 1 {
		t.Fatalf("last record: %v %d", err, len(last))
	}
	// A forged JWT-SVID record (no certificate to contradict it), chained
	// after the last real record.
	forged := storagetest.Gen("forged", last[0].Seq+1)
	forged.CertDER, forged.IssuerKeyID = nil, "jwt:forged"
	forged.Seal(last[0].Hash)
	if err := st.Append(ctx, []*record.Record{forged}); err != nil {
		t.Fatal(err)
	}

	out, err := srv.cli("audit", "verify", "--allow-unverified-tail", "-o", "json")
	got := parseVerify(t, out)
	if err == nil || got.OK || got.FirstBad != forged.Seq || got.Problem != storage.ProblemNotInJournal || !strings.Contains(got.Detail, "forged tail") {
		t.Fatalf("online verify with a forged tail: %v %+v", err, got)
	}
	t.Logf("online: %s: %s", got.Problem, got.Detail)

	bundle := filepath.Join(data, "bundle.pem")
	out, err = runBin("tier0", "audit", "verify", "--store", b.dsn, "--bundle", bundle)
	want := "records " + strconv.FormatUint(forged.Seq, 10) + ".." + strconv.FormatUint(forged.Seq, 10) + " are newer than the newest signed checkpoint"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(out, "UNVERIFIED") {
		t.Fatalf("offline verify with an unverified tail: %v\n%s", err, out)
	}
	if out, err := runBin("tier0", "audit", "verify", "--store", b.dsn, "--bundle", bundle, "--allow-unverified-tail"); err != nil {
		t.Fatalf("offline verify --allow-unverified-tail: %v\n%s", err, out)
	}
}
