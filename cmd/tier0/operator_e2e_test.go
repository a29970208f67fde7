package main

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/internal/operator"
)

// TestNamedOperatorsE2E: an admin enrols a named operator and a named
// auditor with tokens; each logs in from its own data dir (`tier0 login`);
// the operator's state-changing calls are logged under its own SPIFFE ID;
// the auditor runs `tier0 audit verify` remotely; tokens list with their
// creator and can be revoked; evicting the operator cuts it off.
func TestNamedOperatorsE2E(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--checkpoint-every", "5", "--checkpoint-interval", "300ms")
	bundle := filepath.Join(srv.dataDir, "bundle.pem")
	tok := func(args ...string) string {
		return strings.TrimSpace(must(srv.cli(append([]string{"token", "create"}, args...)...)))
	}
	login := func(dir, token string) (string, error) {
		return runBin("tier0", "login", "--token", token, "--server", srv.addr(), "--bundle", bundle, "--data-dir", dir)
	}
	alice, bob := t.TempDir(), t.TempDir()
	if out, err := login(alice, tok("--admin", "alice")); err != nil || !strings.Contains(out, "spiffe://example.org/tier0/admin/alice") {
		t.Fatalf("login alice: %s %v", out, err)
	}
	must(login(bob, tok("--auditor", "bob")))

	// alice administers from her own data dir; the server logs her ID.
	must(runBin("tier0", "entry", "create", "--agent", "h1", "--spiffe-id", "spiffe://example.org/w", "--data-dir", alice))
	pollUntil(t, 10*time.Second, func() bool {
		return strings.Contains(srv.log.String(), `msg="operator call" method=/tier0.v1.Admin/CreateEntry by=spiffe://example.org/tier0/admin/alice code=OK`)
	})
	// A token alice creates lists her as its creator.
	must(runBin("tier0", "token", "create", "--agent", "h1", "--data-dir", alice))
	var toks []map[string]any
	must(0, json.Unmarshal([]byte(must(srv.cli("token", "list", "-o", "json"))), &toks))
	var byAlice, usedAdminTok bool
	for _, tk := range toks {
		byAlice = byAlice || tk["creator"] == "spiffe://example.org/tier0/admin/alice" && tk["used"] == false
		usedAdminTok = usedAdminTok || tk["subject"] == "spiffe://example.org/tier0/admin/alice" && tk["used"] == true
	}
	if !byAlice || !usedAdminTok {
		t.Fatalf("token list: %v", toks)
	}

	// bob verifies the audit chain remotely with his own credential.
	ag := agentClient(t, srv, "audit-1", "spiffe://example.org/audit")
	issueMix(t, ag, "spiffe://example.org/audit", 10)
	pollUntil(t, 30*time.Second, func() bool {
		out, err := runBin("tier0", "audit", "verify", "-o", "json", "--data-dir", bob)
		return err == nil && parseVerify(t, out).OK && parseVerify(t, out).To >= 10
	})
	// bob renews his credential (what the CLI does at half life): same
	// attestation, a new serial that the registry records.
	svid, err := client.LoadSVIDFiles(filepath.Join(bob, "auditor", client.SVIDFile), filepath.Join(bob, "auditor", client.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(t.Context(), client.Config{Addrs: []string{srv.addr()}, TrustDomain: srv.td(), Bundle: srv.bundle(), SVID: client.NewRotatingSVID(svid)})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	resp, err := tier0v1.NewOperatorClient(cl).RenewOperator(t.Context(), &tier0v1.RenewAgentRequest{Csr: csrFor(t, p256(t), nil, nil, nil)})
	if err != nil {
		t.Fatal(err)
	}
	leaf := must(x509.ParseCertificate(resp.GetChain()[0]))
	if gen, ok, err := ca.AttestationGeneration(leaf); err != nil || !ok || gen != 1 {
		t.Fatalf("renewed operator SVID: generation %d %v %v", gen, ok, err)
	}
	pollUntil(t, 10*time.Second, func() bool {
		return strings.Contains(must(srv.cli("agent", "show", "--kind", "auditor", "bob")), leaf.SerialNumber.Text(16))
	})
	adm, err := operator.Dial(t.Context(), operator.Options{DataDir: srv.dataDir}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if _, err := tier0v1.NewOperatorClient(adm).RenewOperator(t.Context(), &tier0v1.RenewAgentRequest{Csr: csrFor(t, p256(t), nil, nil, nil)}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("the bootstrap admin renewed through RenewOperator: %v", err)
	}
	// The CLI renews a named credential past half its lifetime (here: a
	// clock 40 minutes ahead of a 1 h credential) and rewrites its files.
	before := must(os.ReadFile(filepath.Join(bob, "auditor", client.SVIDFile)))
	ahead, err := operator.Dial(t.Context(), operator.Options{DataDir: bob, Now: func() time.Time { return time.Now().Add(40 * time.Minute) }}, "auditor")
	if err != nil {
		t.Fatal(err)
	}
	ahead.Close()
	after, err := client.LoadSVIDFiles(filepath.Join(bob, "auditor", client.SVIDFile), filepath.Join(bob, "auditor", client.KeyFile))
	if err != nil || bytes.Equal(before, must(os.ReadFile(filepath.Join(bob, "auditor", client.SVIDFile)))) || after.ID.String() != "spiffe://example.org/tier0/auditor/bob" {
		t.Fatalf("the CLI did not renew a credential past half life: %v", err)
	}
	if gen, ok, _ := ca.AttestationGeneration(after.Certificates[0]); !ok || gen != 1 {
		t.Fatalf("renewed by the CLI: generation %d %v", gen, ok)
	}
	pollUntil(t, 30*time.Second, func() bool { // with the renewed credential (new records wait for a checkpoint)
		_, err := runBin("tier0", "audit", "verify", "--data-dir", bob)
		return err == nil
	})
	if _, err := runBin("tier0", "entry", "list", "--data-dir", bob, "--credential", filepath.Join(bob, "auditor")); err == nil {
		t.Fatal("an auditor listed entries through the Admin service")
	}

	// The registry lists them; evicting alice cuts her off at once.
	var admins []map[string]any
	must(0, json.Unmarshal([]byte(must(srv.cli("agent", "list", "--kind", "all", "-o", "json"))), &admins))
	if !strings.Contains(must(srv.cli("agent", "list", "--kind", "admin")), "spiffe://example.org/tier0/admin/alice") || len(admins) < 3 {
		t.Fatalf("agent list: %v", admins)
	}
	must(srv.cli("agent", "evict", "spiffe://example.org/tier0/admin/alice"))
	if out, err := runBin("tier0", "entry", "list", "--data-dir", alice); err == nil || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Fatalf("evicted operator: %s %v", out, err)
	}

	// A revoked token no longer logs in.
	t2 := tok("--auditor", "carol")
	var list []map[string]any
	must(0, json.Unmarshal([]byte(must(srv.cli("token", "list", "-o", "json"))), &list))
	prefix := ""
	for _, tk := range list {
		if tk["subject"] == "spiffe://example.org/tier0/auditor/carol" {
			prefix = tk["hash_prefix"].(string)
		}
	}
	must(srv.cli("token", "revoke", prefix))
	if out, err := login(t.TempDir(), t2); err == nil || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Fatalf("revoked token: %s %v", out, err)
	}
}
