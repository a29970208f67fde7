package storagetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
)

// AuditKey is a test CA root and an audit key certified by it.
type AuditKey struct {
	Root    *x509.Certificate
	RootKey *ecdsa.PrivateKey // signs the root's SVIDs (CertChain)
	Signer  *ecdsa.PrivateKey
	Cert    *x509.Certificate
}

// NewAuditKey makes a root for example.org and an audit key certificate.
func NewAuditKey(t testing.TB) *AuditKey {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	rk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := Base.Add(-time.Hour)
	root, err := ca.NewRoot(td, rk, 10*365*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.NewAuditKeyCert(td, ca.Issuer{Signer: rk, Cert: root}, ak.Public(), 9*365*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	return &AuditKey{Root: root, RootKey: rk, Signer: ak, Cert: cert}
}

// Roots returns the bundle that verifies k's checkpoints.
func (k *AuditKey) Roots() []*x509.Certificate { return []*x509.Certificate{k.Root} }

// Checkpoint signs an unlinked (v1) checkpoint at r (its seq and hash).
func (k *AuditKey) Checkpoint(t testing.TB, r *record.Record) record.Checkpoint {
	t.Helper()
	return k.sign(t, record.Checkpoint{Seq: r.Seq, Head: r.Hash, SignedAt: r.CommittedAt.Add(time.Second), NodeID: "node-0", CertDER: k.Cert.Raw})
}

// CheckpointAfter signs a checkpoint at r linked to the checkpoint at prev
// (0: the first), as the leader makes them.
func (k *AuditKey) CheckpointAfter(t testing.TB, r *record.Record, prev uint64) record.Checkpoint {
	t.Helper()
	return k.sign(t, record.Checkpoint{Seq: r.Seq, Head: r.Hash, SignedAt: r.CommittedAt.Add(time.Second), NodeID: "node-0", CertDER: k.Cert.Raw, Prev: &prev})
}

func (k *AuditKey) sign(t testing.TB, c record.Checkpoint) record.Checkpoint {
	t.Helper()
	if err := c.Sign(k.Signer); err != nil {
		t.Fatal(err)
	}
	return c
}

// AuditChain returns TamperN sealed records in which every third is a
// JWT-SVID record (empty CertDER, serial = a jti), and linked checkpoints
// at seqs 10, 20, 30, 40 and 50.
func AuditChain(t testing.TB, k *AuditKey) ([]*record.Record, []record.Checkpoint) {
	t.Helper()
	recs := make([]*record.Record, TamperN)
	prev := record.Genesis
	for i := range recs {
		r := Gen("audit", uint64(i+1))
		if r.Seq%3 == 0 {
			r.CertDER = nil
			r.Serial = fmt.Sprintf("%032x", r.Seq) // the jti, hex
		}
		prev = r.Seal(prev)
		recs[i] = r
	}
	var cps []record.Checkpoint
	for s := 10; s <= TamperN; s += 10 {
		cps = append(cps, k.CheckpointAfter(t, recs[s-1], uint64(s-10)))
	}
	return recs, cps
}

// RunAudit checks checkpoints, decisions, Prune and VerifyAudit's tamper
// matrix on a backend. open returns a fresh, empty store.
func RunAudit(t *testing.T, open func(t *testing.T) (storage.AuditStore, Tamperer)) {
	t.Run("Checkpoints", func(t *testing.T) { testCheckpoints(t, open) })
	t.Run("Decisions", func(t *testing.T) { testDecisions(t, open) })
	t.Run("Prune", func(t *testing.T) { testPrune(t, open) })
	t.Run("Tamper", func(t *testing.T) { runAuditTamper(t, open) })
	t.Run("DecisionChain", func(t *testing.T) { RunDecisionChain(t, open) })
	t.Run("LineageBase", func(t *testing.T) { testAuditLineageBase(t, open) })
	t.Run("CertTamper", func(t *testing.T) { runCertTamper(t, open) })
	t.Run("JournalTail", func(t *testing.T) { runJournalTail(t, open) })
	t.Run("Intermediates", func(t *testing.T) { runIntermediates(t, open) })
}

func testCheckpoints(t *testing.T, open func(t *testing.T) (storage.AuditStore, Tamperer)) {
	ctx := context.Background()
	s, _ := open(t)
	k := NewAuditKey(t)
	recs, cps := AuditChain(t, k)
	Append(t, s, recs, 7)
	if err := s.AppendCheckpoints(ctx, cps[:3]); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendCheckpoints(ctx, cps); err != nil { // overlapping resend
		t.Fatalf("idempotent AppendCheckpoints: %v", err)
	}
	got, err := s.Checkpoints(ctx, 15, 40)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Seq != 20 || got[2].Seq != 40 {
		t.Fatalf("Checkpoints(15, 40) = %d checkpoints starting at %v", len(got), got)
	}
	for _, c := range got {
		if err := c.Verify(k.Roots()); err != nil {
			t.Fatalf("round-tripped checkpoint: %v", err)
		}
	}
	if err := s.AppendCheckpoints(ctx, []record.Checkpoint{{Seq: 1}}); err == nil {
		t.Fatal("AppendCheckpoints accepted an unsigned checkpoint")
	}
	res, err := storage.VerifyAudit(ctx, s, 0, 0, k.Roots())
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || res.Checked != TamperN || res.Checkpoints != 5 || res.LastCheckpoint != 50 {
		t.Fatalf("VerifyAudit = %+v", res)
	}
	res, err = storage.VerifyAudit(ctx, s, 25, 45, k.Roots())
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || res.Anchor != 20 || res.LastCheckpoint != 40 {
		t.Fatalf("VerifyAudit(25, 45) = %+v, want anchored at 20", res)
	}
	if _, err := storage.VerifyAudit(ctx, s, 10, 5, k.Roots()); err == nil {
		t.Fatal("VerifyAudit(10, 5) accepted a reversed range")
	}
}

func testDecisions(t *testing.T, open func(t *testing.T) (storage.AuditStore, Tamperer)) {
	ctx := context.Background()
	s, _ := open(t)
	agent := "spiffe://example.org/tier0/agent/a1"
	var ds []storage.Decision
	for i := range 10 {
		ds = append(ds, storage.Decision{At: Base.Add(time.Duration(i) * time.Second), NodeID: "n1", Caller: agent,
			Requested: SPIFFEIDs[i%2], Allowed: i%3 != 0, Reason: fmt.Sprintf("reason %d", i), Code: fmt.Sprintf("code%d", i)})
	}
	if err := s.AppendDecisions(ctx, ds); err != nil {
		t.Fatal(err)
	}
	all, err := s.QueryDecisions(ctx, storage.DecisionFilter{})
	if err != nil || len(all) != 10 || all[0].Reason != "reason 9" || all[0].Code != "code9" || !all[0].At.Equal(ds[9].At) {
		t.Fatalf("QueryDecisions = %d, %v", len(all), err)
	}
	denied, err := s.QueryDecisions(ctx, storage.DecisionFilter{Denied: true, Requested: SPIFFEIDs[0]})
	if err != nil || len(denied) != 2 { // i = 0, 6
		t.Fatalf("denied for %s = %d, %v", SPIFFEIDs[0], len(denied), err)
	}
	win, err := s.QueryDecisions(ctx, storage.DecisionFilter{Caller: agent, Since: Base.Add(2 * time.Second), Until: Base.Add(5 * time.Second), Limit: 2})
	if err != nil || len(win) != 2 || win[0].Reason != "reason 4" {
		t.Fatalf("window = %v, %v", win, err)
	}
	for _, f := range []storage.DecisionFilter{{Caller: "not-an-id"}, {Limit: -1}, {Limit: storage.MaxLimit + 1},
		{Since: time.Date(20000, 1, 1, 0, 0, 0, 0, time.UTC)}, {Since: Base, Until: Base.Add(-time.Hour)}} {
		if _, err := s.QueryDecisions(ctx, f); err == nil {
			t.Errorf("QueryDecisions(%+v) accepted a malformed filter", f)
		}
	}
}

func testPrune(t *testing.T, open func(t *testing.T) (storage.AuditStore, Tamperer)) {
	ctx := context.Background()
	s, _ := open(t)
	k := NewAuditKey(t)
	recs, cps := AuditChain(t, k)
	Append(t, s, recs, TamperN)
	if err := s.AppendCheckpoints(ctx, cps); err != nil {
		t.Fatal(err)
	}
	// Records 1..25 were committed before recs[25]; the last checkpoint among them is 20.
	res, err := s.Prune(ctx, recs[25].CommittedAt)
	if err != nil {
		t.Fatal(err)
	}
	if res.Checkpoint != 20 || res.Records != 19 {
		t.Fatalf("Prune = %+v, want anchor 20 and 19 records removed", res)
	}
	if first, _ := s.FirstSeq(ctx); first != 20 {
		t.Fatalf("FirstSeq after prune = %d, want 20", first)
	}
	if last, _ := s.LastSeq(ctx); last != TamperN {
		t.Fatalf("LastSeq after prune = %d", last)
	}
	v, err := storage.VerifyAudit(ctx, s, 0, 0, k.Roots())
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() || v.Anchor != 20 || v.Checked != TamperN-19 {
		t.Fatalf("VerifyAudit after prune = %+v", v)
	}
	// Deleting the anchor's record too is caught.
	if err := s.AppendCheckpoints(ctx, cps[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prune(ctx, recs[0].CommittedAt); err != nil { // nothing older: a no-op
		t.Fatal(err)
	}
}

func runAuditTamper(t *testing.T, open func(t *testing.T) (storage.AuditStore, Tamperer)) {
	type edit func(recs []*record.Record, cps []record.Checkpoint, k *AuditKey) []tamperStmt
	stmt := func(q string, args ...any) tamperStmt { return tamperStmt{q, args} }
	tests := []struct {
		name     string
		edit     edit
		firstBad uint64
		problem  string
	}{
		{"intact", func([]*record.Record, []record.Checkpoint, *AuditKey) []tamperStmt { return nil }, 0, ""},
		{"jwt record edited", func([]*record.Record, []record.Checkpoint, *AuditKey) []tamperStmt {
			return []tamperStmt{stmt("UPDATE issuance_records SET spiffe_id = 'spiffe://example.org/evil' WHERE seq = 18")}
		}, 18, storage.ProblemModified},
		{"record deleted", func([]*record.Record, []record.Checkpoint, *AuditKey) []tamperStmt {
			return []tamperStmt{stmt("DELETE FROM issuance_records WHERE seq = 33")}
		}, 33, storage.ProblemMissing},
		{"last records deleted", func([]*record.Record, []record.Checkpoint, *AuditKey) []tamperStmt {
			return []tamperStmt{stmt("DELETE FROM issuance_records WHERE seq > 45")}
		}, 46, storage.ProblemMissing},
		{"checkpoint head edited", func([]*record.Record, []record.Checkpoint, *AuditKey) []tamperStmt {
			return []tamperStmt{stmt("UPDATE audit_checkpoints SET head = ? WHERE seq = 30", make([]byte, record.HashSize))}
		}, 30, storage.ProblemForgedCheckpoint},
		{"checkpoint signature edited", func(_ []*record.Record, cps []record.Checkpoint, _ *AuditKey) []tamperStmt {
			sig := append([]byte(nil), cps[1].Signature...)
			sig[len(sig)-1] ^= 1
			return []tamperStmt{stmt("UPDATE audit_checkpoints SET signature = ? WHERE seq = 20", sig)}
		}, 20, storage.ProblemForgedCheckpoint},
		{"checkpoint signed by another key", func(recs []*record.Record, _ []record.Checkpoint, _ *AuditKey) []tamperStmt {
			c := NewAuditKey(t).Checkpoint(t, recs[14])
			return []tamperStmt{stmt("INSERT INTO audit_checkpoints (seq, head, signed_at, node_id, cert_der, signature) SELECT 15, ?, signed_at, node_id, ?, ? FROM audit_checkpoints WHERE seq = 10",
				c.Head, c.CertDER, c.Signature)}
		}, 15, storage.ProblemForgedCheckpoint},
		{"checkpoint deleted", func([]*record.Record, []record.Checkpoint, *AuditKey) []tamperStmt {
			return []tamperStmt{stmt("DELETE FROM audit_checkpoints WHERE seq = 30")}
		}, 30, storage.ProblemMissingCheckpoint},
		{"checkpoint link lost in a rolling upgrade (not tampering)", func([]*record.Record, []record.Checkpoint, *AuditKey) []tamperStmt {
			return []tamperStmt{stmt("UPDATE audit_checkpoints SET prev_seq = NULL WHERE seq IN (10, 30)")}
		}, 0, ""},
		{"checkpoint link lost, and the one before it deleted", func([]*record.Record, []record.Checkpoint, *AuditKey) []tamperStmt {
			return []tamperStmt{stmt("UPDATE audit_checkpoints SET prev_seq = NULL WHERE seq = 30"), stmt("DELETE FROM audit_checkpoints WHERE seq = 20")}
		}, 30, storage.ProblemForgedCheckpoint},
		{"checkpoint link edited", func([]*record.Record, []record.Checkpoint, *AuditKey) []tamperStmt {
			return []tamperStmt{stmt("UPDATE audit_checkpoints SET prev_seq = 10 WHERE seq = 30")}
		}, 30, storage.ProblemForgedCheckpoint},
		{"suffix rewritten consistently", func(recs []*record.Record, _ []record.Checkpoint, _ *AuditKey) []tamperStmt {
			var out []tamperStmt
			prev := recs[21].Hash
			for _, r := range recs[22:] {
				m := *r
				if m.Seq == 23 {
					m.SPIFFEID = "spiffe://example.org/evil"
				}
				prev = m.Seal(prev)
				out = append(out, stmt("UPDATE issuance_records SET spiffe_id = ?, prev_hash = ?, hash = ? WHERE seq = ?",
					m.SPIFFEID, m.PrevHash, m.Hash, int64(m.Seq)))
			}
			return out
		}, 21, storage.ProblemCheckpointMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, tam := open(t)
			k := NewAuditKey(t)
			recs, cps := AuditChain(t, k)
			Append(t, s, recs, 16)
			if err := s.AppendCheckpoints(ctx, cps); err != nil {
				t.Fatal(err)
			}
			for _, st := range tc.edit(recs, cps, k) {
				if err := tam.Exec(ctx, st.q, st.args...); err != nil {
					t.Fatalf("tamper %q: %v", st.q, err)
				}
			}
			res, err := storage.VerifyAudit(ctx, s, 0, 0, k.Roots())
			if err != nil {
				t.Fatal(err)
			}
			if res.FirstBad != tc.firstBad || res.Problem != tc.problem {
				t.Fatalf("VerifyAudit = first bad seq %d %q (%s), want seq %d %q", res.FirstBad, res.Problem, res.Detail, tc.firstBad, tc.problem)
			}
		})
	}
}

type tamperStmt struct {
	q    string
	args []any
}
