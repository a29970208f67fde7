package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// runIn runs tier0 with args in dir (cwd) and returns stdout, or an error
// with stderr.
func runIn(dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "tier0"), args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("tier0 %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// TestAuditLogThroughServerCluster: on a 3-node cluster of separate
// processes with a Postgres record store, an auditor with only the
// auditor credential (no database access) exports the log, proves one
// SVID's inclusion, and two witnesses cosign through the server; in an
// empty directory, with the cluster stopped and the database schema gone,
// the export verifies with the bundle alone and the proof with the bundle
// and the audit key certificate; online verify requires the witnesses.
func TestAuditLogThroughServerCluster(t *testing.T) {
	pg := postgresBackend(t)
	c := startCluster(t, 3, "--store", pg.dsn, "--checkpoint-every", "10", "--checkpoint-interval", "300ms")
	ag := c.agent("log-1", "spiffe://example.org/log")
	issueMix(t, ag, "spiffe://example.org/log", 24)
	// One SVID whose certificate the relying party keeps.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := ag.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: csrFor(t, p256(t), []string{"spiffe://example.org/log"}, nil, nil)}}})
	if err != nil || len(resp.GetResults()) != 1 || len(resp.GetResults()[0].GetChain()) == 0 {
		t.Fatalf("mint: %v %v", resp, err)
	}
	leaf := resp.GetResults()[0].GetChain()[0]
	// Admin changes, through a follower.
	lead := c.leader()
	fol := c.nodes[(lead+1)%3]
	out := must(fol.cli("entry", "create", "--agent", "log-2", "--spiffe-id", "spiffe://example.org/log-2"))
	must(fol.cli("entry", "delete", strings.TrimSuffix(strings.Fields(out)[2], ":")))
	issueMix(t, ag, "spiffe://example.org/log", 8)

	// Wait until a tree checkpoint covers every record (no unverified tail).
	auditor := c.nodes[(lead+2)%3]
	type cp struct {
		Size int64  `json:"size"`
		Note string `json:"note"`
	}
	var newest cp
	pollUntil(t, 60*time.Second, func() bool {
		v, err := auditor.cli("audit", "verify", "-o", "json", "--allow-unverified-tail")
		if err != nil {
			return false
		}
		to := parseVerify(t, v).To
		out, err := auditor.cli("audit", "checkpoint", "-o", "json")
		if err != nil || json.Unmarshal([]byte(out), &newest) != nil {
			return false
		}
		return to > 30 && uint64(newest.Size) == to
	})

	work := t.TempDir()
	auditPEM := filepath.Join(work, "audit.pem")
	must(auditor.cli("audit", "checkpoint", "--cert-out", auditPEM))
	bundle := filepath.Join(auditor.dataDir, "bundle.pem")
	keys := map[string]string{}
	for _, name := range []string{"w1.example", "w2.example"} {
		out, err := auditor.cli("witness", "--log-key", auditPEM, "--name", name, "--state", filepath.Join(work, name), "--bundle", bundle, "-o", "json")
		var w struct {
			Size int64  `json:"size"`
			Key  string `json:"witness_key"`
		}
		if err != nil || json.Unmarshal([]byte(out), &w) != nil || w.Size != newest.Size {
			t.Fatalf("witness %s: %v\n%s", name, err, out)
		}
		keys[name] = name + "=" + w.Key
	}
	both := keys["w1.example"] + "," + keys["w2.example"]
	if out, err := auditor.cli("audit", "verify", "--witness", both, "--witness-min", "2"); err != nil {
		t.Fatalf("verify --witness (2 of 2): %v\n%s", err, out)
	}
	w3 := "w3.example=" + strings.Repeat("ab", 32)
	if out, err := auditor.cli("audit", "verify", "--witness", both+","+w3, "--witness-min", "3"); err == nil ||
		!strings.Contains(err.Error(), "carries valid cosignatures of 2 of the 3 witnesses given") {
		t.Fatalf("verify --witness with one that did not cosign: %v\n%s", err, out)
	}

	exp := filepath.Join(work, "audit.jsonl")
	must(auditor.cli("audit", "export", "--verifiable", "--out", exp))
	incl := filepath.Join(work, "incl.json")
	must(auditor.cli("audit", "prove", "--serial", leafSerial(t, leaf), "--out", incl))

	// Nothing reachable: the cluster stopped, the schema renamed away.
	for _, n := range c.nodes {
		n.stop()
	}
	gone := pgRename(t, pg.dsn)
	defer gone()
	empty := t.TempDir()
	for src, dst := range map[string]string{exp: "audit.jsonl", bundle: "bundle.pem", incl: "incl.json", auditPEM: "audit.pem"} {
		if err := os.WriteFile(filepath.Join(empty, dst), mustRead(t, src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	svidPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf})
	if err := os.WriteFile(filepath.Join(empty, "svid.pem"), svidPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = runIn(empty, "audit", "verify", "--export", "audit.jsonl", "--bundle", "bundle.pem", "-o", "json")
	if v := parseVerify(t, out); err != nil || !v.OK || v.To != uint64(newest.Size) {
		t.Fatalf("verify --export in an empty directory: %v\n%s", err, out)
	}
	out, err = runIn(empty, "audit", "verify-proof", "incl.json", "--bundle", "bundle.pem", "--log-key", "audit.pem", "--cert", "svid.pem")
	if err != nil || !strings.Contains(out, "OK: record ") {
		t.Fatalf("verify-proof: %v\n%s", err, out)
	}
	// The witnesses' cosignatures travel in the export.
	if out, err := runIn(empty, "audit", "verify", "--export", "audit.jsonl", "--bundle", "bundle.pem",
		"--witness", both, "--witness-min", "2"); err != nil {
		t.Fatalf("verify --export --witness (cosignatures in the export): %v\n%s", err, out)
	}
}

// leafSerial is the certificate's serial as openssl prints it.
func leafSerial(t *testing.T, der []byte) string {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%X", c.SerialNumber.Bytes())
}

// pgRename renames the schema of dsn (its search_path) away, so that no
// tier0 command could read it; the returned func renames it back.
func pgRename(t *testing.T, dsn string) func() {
	t.Helper()
	_, schema, ok := strings.Cut(dsn, "search_path=")
	if !ok {
		t.Fatalf("no search_path in %s", dsn)
	}
	exec := func(q string) {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(fmt.Sprintf("ALTER SCHEMA %s RENAME TO %s_gone", schema, schema))
	return func() { exec(fmt.Sprintf("ALTER SCHEMA %s_gone RENAME TO %s", schema, schema)) }
}
