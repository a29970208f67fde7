package auditcli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/internal/tlog"
	"github.com/tier0-ca/tier0/internal/witness"
	"github.com/tier0-ca/tier0/storage/sqlite"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

// storeOf writes a sqlite store of 30 real SVID records (every fifth a
// JWT-SVID) with chain checkpoints and tree checkpoints at 10 and 30, and
// returns its DSN and records.
func storeOf(t *testing.T, k *storagetest.AuditKey) (string, []*record.Record) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "r.db")
	s, err := sqlite.New(ctx, sqlite.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs, _ := storagetest.CertChain(t, k, 30)
	storagetest.Append(t, s, recs, 16)
	cfg := tlog.SignerConfig{Store: s, Leader: func() bool { return true }, Signer: k.Signer, CertDER: func() []byte { return k.Cert.Raw },
		Roots: func() []*x509.Certificate { return k.Roots() }, Origin: tlog.Origin("example.org"), Clock: time.Now}
	tree, prev := &tlog.Tree{}, uint64(0)
	for _, n := range []int{10, 30} {
		if err := s.AppendCheckpoints(ctx, []record.Checkpoint{k.CheckpointAfter(t, recs[n-1], prev)}); err != nil {
			t.Fatal(err)
		}
		prev = uint64(n)
		if err := tlog.SignRound(ctx, cfg, tree); err != nil {
			t.Fatal(err)
		}
	}
	return "sqlite:" + path, recs
}

func TestVerifyOfflineAndExport(t *testing.T) {
	ctx := context.Background()
	k := storagetest.NewAuditKey(t)
	dsn, _ := storeOf(t, k)
	res, err := VerifyOffline(ctx, dsn, k.Roots(), 0, 0)
	if err != nil || !res.GetOk() || res.GetChecked() != 30 || res.GetLastCheckpointSeq() != 30 {
		t.Fatalf("VerifyOffline = %v, %v", res, err)
	}
	other := storagetest.NewAuditKey(t)
	if res, err := VerifyOffline(ctx, dsn, other.Roots(), 0, 0); err != nil || res.GetOk() {
		t.Fatalf("VerifyOffline with another bundle = %v, %v", res, err)
	}

	out := filepath.Join(t.TempDir(), "export.jsonl")
	if n, err := WriteVerifiable(ctx, dsn, k.Roots(), out); err != nil || n != 30 {
		t.Fatalf("WriteVerifiable = %d, %v", n, err)
	}
	if _, err := WriteVerifiable(ctx, dsn, k.Roots(), out); err == nil || !strings.Contains(err.Error(), "file exists") {
		t.Fatalf("second WriteVerifiable to the same file = %v", err)
	}
	var log bytes.Buffer
	res, err = VerifyExport(ctx, out, k.Roots(), Witnesses{}, &log)
	if err != nil || !res.GetOk() || res.GetChecked() != 30 || log.String() != out+": 2 tree checkpoints verified\n" {
		t.Fatalf("VerifyExport = %v, %v, log %q", res, err, log.String())
	}

	// A real witness cosigns the newest tree checkpoint; verify requires it.
	ts, closeStore, err := OpenTreeStore(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	state := t.TempDir()
	w, err := witness.New(witness.Config{Name: "w1", Key: key, LogCert: k.Cert.Raw, Roots: k.Roots(), StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	note, err := w.Step(ctx, witness.StoreSource{Prover: tlog.Prover{Store: ts}})
	if err != nil {
		t.Fatal(err)
	}
	noteFile := filepath.Join(state, "mine.note")
	if err := os.WriteFile(noteFile, note, 0o600); err != nil {
		t.Fatal(err)
	}
	pub := hex.EncodeToString(key.Public().(ed25519.PublicKey))
	log.Reset()
	if _, err := VerifyExport(ctx, out, k.Roots(), Witnesses{Keys: []string{"w1=" + pub}, Cosigned: []string{noteFile}}, &log); err != nil ||
		!strings.HasSuffix(log.String(), out+": the tree of size 30 is cosigned by at least 1 of 1 witnesses\n") {
		t.Fatalf("VerifyExport with witness = %v, log %q", err, log.String())
	}
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := VerifyExport(ctx, out, k.Roots(), Witnesses{Keys: []string{"w1=" + hex.EncodeToString(otherPub)}, Cosigned: []string{noteFile}}, &log); err == nil ||
		!strings.HasPrefix(err.Error(), "witnesses: ") {
		t.Fatalf("VerifyExport with another witness key = %v", err)
	}
}

func TestWitnessesLoad(t *testing.T) {
	key := strings.Repeat("ab", 32)
	note := filepath.Join(t.TempDir(), "n")
	_ = os.WriteFile(note, []byte("x"), 0o600)
	tests := []struct {
		w    Witnesses
		want string
	}{
		{Witnesses{Keys: []string{"w1"}, Cosigned: []string{note}}, `--witness "w1": want NAME=<Ed25519 public key, 64 hex digits>`},
		{Witnesses{Keys: []string{"=" + key}, Cosigned: []string{note}}, `--witness "=` + key + `": want NAME=<Ed25519 public key, 64 hex digits>`},
		{Witnesses{Keys: []string{"w1=abcd"}, Cosigned: []string{note}}, `--witness "w1=abcd": want NAME=<Ed25519 public key, 64 hex digits>`},
		{Witnesses{Keys: []string{"w1=" + key}, Cosigned: []string{note}, Min: 2}, "--witness-min 2: only 1 --witness keys given"},
		{Witnesses{Keys: []string{"w1=" + key}, Cosigned: []string{note + "x"}}, "open " + note + "x: no such file or directory"},
	}
	for _, tc := range tests {
		if _, _, _, err := tc.w.Load(); err == nil || err.Error() != tc.want {
			t.Errorf("%v: Load = %v, want %q", tc.w, err, tc.want)
		}
	}
	ws, notes, n, err := Witnesses{Keys: []string{"w1=" + key, "w2=" + key}, Cosigned: []string{note}}.Load()
	if err != nil || len(ws) != 2 || len(notes) != 1 || n != 2 {
		t.Fatalf("Load = %d keys, %d notes, min %d, %v", len(ws), len(notes), n, err)
	}
	// No --cosigned: VerifyExport takes the cosignatures stored in the export.
	if ws, notes, n, err := (Witnesses{Keys: []string{"w1=" + key}}).Load(); err != nil || len(ws) != 1 || len(notes) != 0 || n != 1 {
		t.Fatalf("Load without notes = %d keys, %d notes, min %d, %v", len(ws), len(notes), n, err)
	}
}

func TestProve(t *testing.T) {
	ctx := context.Background()
	k := storagetest.NewAuditKey(t)
	dsn, recs := storeOf(t, k)
	ts, closeStore, err := OpenTreeStore(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore()
	if _, err := Prove(ctx, ts, "", 0, 0); err == nil || err.Error() != "give either --serial S or --from N [--to M]" {
		t.Fatalf("Prove with neither = %v", err)
	}
	if _, err := Prove(ctx, ts, "deadbeef", 0, 0); err == nil || err.Error() != "no record with serial deadbeef" {
		t.Fatalf("Prove unknown serial = %v", err)
	}
	r := recs[2]
	raw, err := Prove(ctx, ts, "0x"+strings.ToUpper(r.Serial), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(der []byte) string {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return writePEM(t, c)
	}
	res, err := CheckProof("p.json", raw, k.Roots(), pemOf(r.CertDER))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := res.Write(&b, Text); err != nil || !strings.HasPrefix(b.String(), "OK: record 3 (serial "+CanonicalSerial(r.Serial)+", "+r.SPIFFEID+") is leaf 2 of the log tier0/example.org of size 30, root ") {
		t.Fatalf("inclusion text = %v %q", err, b.String())
	}
	wrong := pemOf(recs[3].CertDER)
	if _, err := CheckProof("p.json", raw, k.Roots(), wrong); err == nil || !strings.HasPrefix(err.Error(), "proof verifies, but for another certificate than "+wrong+" (record 3, serial ") {
		t.Fatalf("CheckProof with another cert = %v", err)
	}
	if _, err := CheckProof("p.json", raw, storagetest.NewAuditKey(t).Roots(), ""); err == nil || !strings.HasPrefix(err.Error(), "proof does NOT verify: ") {
		t.Fatalf("CheckProof with another bundle = %v", err)
	}
	if _, err := CheckProof("p.json", []byte("{"), k.Roots(), ""); err == nil || !strings.HasPrefix(err.Error(), "p.json: not a proof file: ") {
		t.Fatalf("CheckProof garbage = %v", err)
	}

	raw, err = Prove(ctx, ts, "", 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res, err = CheckProof("c.json", raw, k.Roots(), ""); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if err := res.Write(&b, JSON); err != nil || !strings.Contains(b.String(), `"old_size": 10,`) || !strings.Contains(b.String(), "\"size\": 30\n") {
		t.Fatalf("consistency json = %v %s", err, b.String())
	}
}
