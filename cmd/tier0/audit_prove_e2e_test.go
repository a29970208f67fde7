package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/internal/tlog"
	"github.com/tier0-ca/tier0/storage"
)

// TestAuditProveCLI: the leader signs Merkle tree checkpoints of the
// store; `audit prove --serial` (the serial as openssl prints it) gives an
// inclusion proof and `audit prove --from --to` a consistency proof that
// `audit verify-proof` checks in an empty directory with only the bundle;
// an edited proof fails.
func TestAuditProveCLI(t *testing.T) {
	b := sqliteBackend(t)
	data := t.TempDir()
	srv := startServer(t, data, "--store", b.dsn, "--checkpoint-every", "10", "--checkpoint-interval", "300ms")
	ag := agentClient(t, srv, "prove-1", "spiffe://example.org/prove")
	issueMix(t, ag, "spiffe://example.org/prove", 12)
	ctx := context.Background()
	st, err := storage.Open(ctx, b.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	trees := func() []storage.TreeCheckpoint {
		tcs, err := st.(storage.TreeStore).TreeCheckpoints(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tcs
	}
	pollUntil(t, 30*time.Second, func() bool { return len(trees()) >= 1 })
	first := trees()[0].Size
	issueMix(t, ag, "spiffe://example.org/prove", 12)
	var newest int64
	pollUntil(t, 30*time.Second, func() bool {
		tcs := trees()
		newest = tcs[len(tcs)-1].Size
		return newest > first+12 // covers the SVIDs of the first issueMix
	})

	recs, err := st.Query(ctx, storage.Filter{SPIFFEID: "spiffe://example.org/prove", Limit: 1000})
	if err != nil || len(recs) == 0 {
		t.Fatalf("records: %v %d", err, len(recs))
	}
	var target *storageRecord
	for _, r := range recs {
		if r.Seq <= uint64(newest) && len(r.CertDER) > 0 {
			target = &storageRecord{r.Seq, r.Serial}
			break
		}
	}
	if target == nil {
		t.Fatalf("no X.509 record within the newest tree checkpoint (size %d)", newest)
	}
	n, _ := new(big.Int).SetString(target.serial, 16)
	openssl := fmt.Sprintf("%X", n.Bytes())

	empty := t.TempDir()
	bundle := filepath.Join(empty, "bundle.pem")
	raw, err := os.ReadFile(filepath.Join(data, "bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bundle, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	incl, cons := filepath.Join(empty, "incl.json"), filepath.Join(empty, "cons.json")
	must(runBin("tier0", "audit", "prove", "--store", b.dsn, "--serial", openssl, "--out", incl))
	must(runBin("tier0", "audit", "prove", "--store", b.dsn, "--from", fmt.Sprint(first), "--out", cons))
	srv.stop()

	// The verifiable export, verified in the empty directory with the
	// bundle alone (the records of the trailing tail are newer than the
	// newest checkpoint: allowed here).
	exp := filepath.Join(empty, "export.jsonl")
	must(runBin("tier0", "audit", "export", "--verifiable", "--store", b.dsn, "--bundle", bundle, "--out", exp))
	if out, err := runBin("tier0", "audit", "verify", "--export", exp, "--bundle", bundle, "--allow-unverified-tail", "-o", "json"); err != nil || !parseVerify(t, out).OK {
		t.Fatalf("verify --export: %v\n%s", err, out)
	}
	// A witness cosigns the newest tree checkpoint; verify --export
	// requires its cosignature.
	wdir := filepath.Join(empty, "witness")
	auditPEM := filepath.Join(empty, "audit.pem")
	tcs := trees()
	if err := os.WriteFile(auditPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tcs[len(tcs)-1].CertDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runBin("tier0", "witness", "--log-key", auditPEM, "--name", "w1.example", "--state", wdir, "--store", b.dsn, "--bundle", bundle, "-o", "json")
	var wout struct {
		Size int64  `json:"size"`
		Key  string `json:"witness_key"`
	}
	if err != nil || json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &wout) != nil || wout.Size == 0 {
		t.Fatalf("tier0 witness: %v\n%s", err, out)
	}
	cosigned := filepath.Join(wdir, "cosigned.note")
	if out, err := runBin("tier0", "audit", "verify", "--export", exp, "--bundle", bundle, "--allow-unverified-tail",
		"--witness", "w1.example="+wout.Key, "--cosigned", cosigned); err != nil {
		t.Fatalf("verify --export --witness: %v\n%s", err, out)
	}
	if out, err := runBin("tier0", "audit", "verify", "--export", exp, "--bundle", bundle, "--allow-unverified-tail",
		"--witness", "w1.example="+wout.Key, "--witness", "w2.example="+strings.Repeat("ab", 32), "--cosigned", cosigned); err == nil ||
		!strings.Contains(err.Error(), "no tree checkpoint is cosigned by 2 of the 2 witnesses") {
		t.Fatalf("verify --export with a witness that did not cosign: %v\n%s", err, out)
	}
	edited := strings.Replace(string(mustRead(t, exp)), "spiffe://example.org/prove", "spiffe://example.org/evil", 1)
	if err := os.WriteFile(exp, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runBin("tier0", "audit", "verify", "--export", exp, "--bundle", bundle, "--allow-unverified-tail", "-o", "json"); err == nil || parseVerify(t, out).Problem != "modified" {
		t.Fatalf("verify --export of an edited export: %v\n%s", err, out)
	}

	out, err = runBin("tier0", "audit", "verify-proof", incl, "--bundle", bundle)
	if err != nil || !strings.Contains(out, fmt.Sprintf("OK: record %d (serial %s", target.seq, openssl)) {
		t.Fatalf("verify-proof inclusion: %v\n%s", err, out)
	}
	out, err = runBin("tier0", "audit", "verify-proof", cons, "--bundle", bundle)
	if err != nil || !strings.Contains(out, fmt.Sprintf("extends the tree of size %d", first)) {
		t.Fatalf("verify-proof consistency: %v\n%s", err, out)
	}
	// An edited proof fails.
	var p tlog.Proof
	if err := json.Unmarshal(mustRead(t, incl), &p); err != nil {
		t.Fatal(err)
	}
	p.Record.SPIFFEID = "spiffe://example.org/evil"
	editedProof, _ := json.Marshal(p)
	bad := filepath.Join(empty, "bad.json")
	if err := os.WriteFile(bad, editedProof, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runBin("tier0", "audit", "verify-proof", bad, "--bundle", bundle); err == nil || !strings.Contains(err.Error(), "proof does NOT verify") {
		t.Fatalf("verify-proof of an edited proof: %v\n%s", err, out)
	}
}

type storageRecord struct {
	seq    uint64
	serial string
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
