package api

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/internal/auditexport"
	"github.com/tier0-ca/tier0/internal/auditremote"
	"github.com/tier0-ca/tier0/internal/roles"
	"github.com/tier0-ca/tier0/internal/tlog"
	"github.com/tier0-ca/tier0/internal/witness"
	"github.com/tier0-ca/tier0/storage/sqlite"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

// treeLogStore is a SQLite record store of 30 real SVID records with chain
// and tree checkpoints at 10 and 30, signed by k.
func treeLogStore(t *testing.T, k *storagetest.AuditKey) (*sqlite.Store, []*record.Record) {
	t.Helper()
	return treeLogStoreAt(t, k, filepath.Join(t.TempDir(), "r.db"))
}

func treeLogStoreAt(t *testing.T, k *storagetest.AuditKey, path string) (*sqlite.Store, []*record.Record) {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.New(ctx, sqlite.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	recs, _ := storagetest.CertChain(t, k, 30)
	storagetest.Append(t, s, recs, 16)
	cfg := tlog.SignerConfig{Store: s, Leader: func() bool { return true }, Signer: k.Signer, CertDER: func() []byte { return k.Cert.Raw },
		Roots: func() []*x509.Certificate { return k.Roots() }, Origin: tlog.Origin("example.org"), Clock: time.Now}
	tree := &tlog.Tree{}
	prev := uint64(0)
	for _, n := range []int{10, 30} {
		if err := s.AppendCheckpoints(ctx, []record.Checkpoint{k.CheckpointAfter(t, recs[n-1], prev)}); err != nil {
			t.Fatal(err)
		}
		prev = uint64(n)
		if err := tlog.SignRound(ctx, cfg, tree); err != nil {
			t.Fatal(err)
		}
	}
	return s, recs
}

func codeIs(t *testing.T, what string, err error, want codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != want || !strings.Contains(status.Convert(err).Message(), msg) {
		t.Errorf("%s: %v; want %v containing %q", what, err, want, msg)
	}
}

// TestAuditLogService: an auditor gets proofs, the verifiable export and
// checkpoints through the server and checks them with the bundle alone;
// witnesses cosign through it and their cosignatures reach every auditor.
func TestAuditLogService(t *testing.T) {
	ctx := context.Background()
	k := storagetest.NewAuditKey(t)
	store, recs := treeLogStore(t, k)
	f := newFixture(t, func(c *Config) { c.TreeLog, c.Records = store, store })
	c := f.clientAs(t, roles.AuditorID(testTD)).AuditLog()

	tc, err := c.GetTreeCheckpoint(ctx, &tier0v1.GetTreeCheckpointRequest{})
	if err != nil || tc.GetSize() != 30 {
		t.Fatalf("GetTreeCheckpoint = %v, %v", tc, err)
	}
	if old, err := c.GetTreeCheckpoint(ctx, &tier0v1.GetTreeCheckpointRequest{Size: 10}); err != nil || old.GetSize() != 10 {
		t.Fatalf("GetTreeCheckpoint(10) = %v, %v", old, err)
	}

	// Inclusion by serial, in a spelling openssl prints (leading zero, colons).
	n, _ := new(big.Int).SetString(recs[6].Serial, 16)
	spelled := strings.ToUpper(n.Text(16))
	raw, err := auditremote.Prove(ctx, c, "0"+spelled, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var p tlog.Proof
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	if cp, err := p.Verify(k.Roots()); err != nil || p.Record.Seq != 7 || cp.Size != 30 {
		t.Fatalf("inclusion proof: seq %d size %d: %v", p.Record.Seq, cp.Size, err)
	}
	raw, err = auditremote.Prove(ctx, c, "", 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	p = tlog.Proof{}
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Verify(k.Roots()); err != nil || p.Kind != tlog.KindConsistency {
		t.Fatalf("consistency proof %s: %v", p.Kind, err)
	}
	if err := auditremote.CheckLogKey(&p, k.Cert); err != nil {
		t.Fatalf("CheckLogKey: %v", err)
	}
	if err := auditremote.CheckLogKey(&p, k.Root); err == nil || !strings.Contains(err.Error(), "signed by another audit key than --log-key") {
		t.Fatalf("CheckLogKey with another certificate: %v", err)
	}
	if got, err := auditremote.Fetch(ctx, c, 10, k.Roots()); err != nil || got.Size != 10 || got.SignedAt.IsZero() {
		t.Fatalf("Fetch(10) = %+v, %v", got, err)
	}
	if _, err := auditremote.Fetch(ctx, c, 0, f.bundle.X509Authorities()); err == nil || !strings.Contains(err.Error(), "does not chain to the bundle") {
		t.Fatalf("Fetch with another bundle: %v", err)
	}

	var buf bytes.Buffer
	if _, err := auditremote.Export(ctx, c, &buf); err != nil {
		t.Fatal(err)
	}
	e, err := auditexport.Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	res, trees, err := auditexport.Verify(ctx, e, k.Roots())
	if err != nil || !res.OK() || res.To != 30 || trees != 2 {
		t.Fatalf("export verify: %+v, %d trees, %v", res, trees, err)
	}

	// Two witnesses cosign through the server; verify requires them.
	ws := map[string]ed25519.PublicKey{}
	for _, name := range []string{"w1.example", "w2.example"} {
		pub, key, _ := ed25519.GenerateKey(rand.Reader)
		ws[name] = pub
		w, err := witness.New(witness.Config{Name: name, Key: key, LogCert: k.Cert.Raw, Roots: k.Roots(), StateDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := auditremote.RequireWitnesses(ctx, c, k.Roots(), ws, len(ws)); err == nil || !strings.Contains(err.Error(), "carries valid cosignatures of") {
			t.Fatalf("before %s cosigned: %v", name, err)
		}
		note, resp, err := auditremote.WitnessRound(ctx, c, w, name, pub)
		if err != nil || !resp.GetAdded() || resp.GetCosignatures() != uint32(len(ws)) {
			t.Fatalf("witness round %s: %v, %v", name, resp, err)
		}
		if resp, err := auditremote.Submit(ctx, c, name, pub, note); err != nil || resp.GetAdded() { // idempotent
			t.Fatalf("resubmitted: %v, %v", resp, err)
		}
		var specs []string
		for n, pk := range ws {
			specs = append(specs, fmt.Sprintf("%s=%x", n, []byte(pk)))
		}
		got, total, err := auditremote.RequireWitnessSpecs(ctx, c, k.Roots(), specs, 0)
		if err != nil || got.Checkpoint.Size != 30 || len(got.By) != len(ws) || total != len(ws) {
			t.Fatalf("after %s cosigned: %+v, %v", name, got, err)
		}
	}
	last, _ := auditremote.Newest(ctx, c)
	if n := bytes.Count(last.Note, []byte("\n— ")); n != 3 {
		t.Fatalf("the stored note has %d signature lines, want 3:\n%s", n, last.Note)
	}
	// The export carries the cosignatures too.
	buf.Reset()
	if _, err := auditremote.Export(ctx, c, &buf); err != nil {
		t.Fatal(err)
	}
	if e, err = auditexport.Read(&buf); err != nil {
		t.Fatal(err)
	}
	if size, err := e.Cosigned([][]byte{last.Note}, ws, 2); err != nil || size != 30 {
		t.Fatalf("export cosigned: %d, %v", size, err)
	}

	// Refusals.
	_, err = auditremote.Prove(ctx, c, "deadbeef", 0, 0)
	codeIs(t, "unknown serial", err, codes.NotFound, "no record with serial deadbeef")
	_, err = auditremote.Prove(ctx, c, "not a serial", 0, 0)
	codeIs(t, "malformed serial", err, codes.InvalidArgument, "serial")
	_, err = c.ProveInclusion(ctx, &tier0v1.ProveInclusionRequest{})
	codeIs(t, "no serial, no seq", err, codes.InvalidArgument, "give either serial or seq")
	_, err = c.ProveInclusion(ctx, &tier0v1.ProveInclusionRequest{Seq: 31})
	codeIs(t, "record after the newest tree checkpoint", err, codes.FailedPrecondition, "newer than the newest tree checkpoint")
	_, err = c.ProveConsistency(ctx, &tier0v1.ProveConsistencyRequest{FromSize: 30, ToSize: 10})
	codeIs(t, "from after to", err, codes.InvalidArgument, "want 0 < from_size <= to_size")
	_, err = c.ProveConsistency(ctx, &tier0v1.ProveConsistencyRequest{FromSize: 11})
	codeIs(t, "unstored size", err, codes.FailedPrecondition, "want two stored tree checkpoint sizes")
	_, err = c.GetTreeCheckpoint(ctx, &tier0v1.GetTreeCheckpointRequest{Size: 11})
	codeIs(t, "unstored size", err, codes.NotFound, "no tree checkpoint of size 11")
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	forged := append(bytes.Clone(tc.GetNote()), witness.Cosign("w3.example", key, "tier0/example.org\n30\nAAAA\n", time.Now())...)
	_, err = auditremote.Submit(ctx, c, "w3.example", pub, forged)
	codeIs(t, "cosignature over another text", err, codes.InvalidArgument, "no valid tlog-cosignature/v1 of \"w3.example\"")
	_, err = auditremote.Submit(ctx, c, "w3.example", pub, []byte("garbage"))
	codeIs(t, "not a note", err, codes.InvalidArgument, "cosigned_note is not a checkpoint note")

	// Roles: admin may, an agent may not.
	if _, err := f.clientAs(t, roles.AdminID(testTD)).AuditLog().GetTreeCheckpoint(ctx, &tier0v1.GetTreeCheckpointRequest{}); err != nil {
		t.Fatalf("admin: %v", err)
	}
	agent, _ := roles.AgentID(testTD, "host-1")
	ac := f.clientAs(t, agent).AuditLog()
	_, err = ac.GetTreeCheckpoint(ctx, &tier0v1.GetTreeCheckpointRequest{})
	codeIs(t, "agent reads a checkpoint", err, codes.PermissionDenied, "may not call /tier0.v1.AuditLog/GetTreeCheckpoint")
	_, err = auditremote.Export(ctx, ac, &buf)
	codeIs(t, "agent exports", err, codes.PermissionDenied, "may not call /tier0.v1.AuditLog/ExportVerifiable")
	_, err = auditremote.Submit(ctx, ac, "w3.example", pub, forged)
	codeIs(t, "agent cosigns", err, codes.PermissionDenied, "may not call /tier0.v1.AuditLog/AddCosignature")
}

// TestAuditLogUnconfigured: without a tree store every method answers
// Unavailable.
func TestAuditLogUnconfigured(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	c := f.clientAs(t, roles.AuditorID(testTD)).AuditLog()
	_, err := c.GetTreeCheckpoint(ctx, &tier0v1.GetTreeCheckpointRequest{})
	codeIs(t, "checkpoint", err, codes.Unavailable, "no record store with tree checkpoints")
	_, err = auditremote.Export(ctx, c, &bytes.Buffer{})
	codeIs(t, "export", err, codes.Unavailable, "no record store with tree checkpoints")
}

// TestAuditLogTamperedStore: a store whose records no longer hash to the
// signed tree root gives no proof: DataLoss, naming the problem.
func TestAuditLogTamperedStore(t *testing.T) {
	ctx := context.Background()
	k := storagetest.NewAuditKey(t)
	path := filepath.Join(t.TempDir(), "r.db")
	store, _ := treeLogStoreAt(t, k, path)
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("UPDATE issuance_records SET spiffe_id = 'spiffe://example.org/evil' WHERE seq = 3"); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *Config) { c.TreeLog, c.Records = store, store })
	c := f.clientAs(t, roles.AuditorID(testTD)).AuditLog()
	_, err = c.ProveInclusion(ctx, &tier0v1.ProveInclusionRequest{Seq: 7})
	codeIs(t, "proof over a tampered store", err, codes.DataLoss, "tlog: tree")
}
