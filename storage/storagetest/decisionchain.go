package storagetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
)

// decisionBatches appends 35 decisions in batches of 10, 10, 10 and 5
// (chain seqs 1..35) and signs decision checkpoints at 10, 20 and 30.
func decisionBatches(t *testing.T, s storage.AuditStore, k *AuditKey) {
	t.Helper()
	ctx := context.Background()
	dc := s.(storage.DecisionChainStore)
	var prev uint64
	for b, n := range []int{10, 10, 10, 5} {
		var ds []storage.Decision
		for i := range n {
			ds = append(ds, storage.Decision{At: Base.Add(time.Duration(b*10+i) * time.Second), NodeID: fmt.Sprintf("n%d", b%2+1),
				Caller: "spiffe://example.org/tier0/agent/a1", Requested: SPIFFEIDs[i%2], Allowed: i%3 != 0,
				Code: map[bool]string{true: "OK", false: "PermissionDenied"}[i%3 != 0], Reason: fmt.Sprintf("reason %d.%d", b, i)})
		}
		if err := s.AppendDecisions(ctx, ds); err != nil {
			t.Fatal(err)
		}
		if n < 10 {
			break
		}
		seq, head, err := dc.DecisionHead(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c := record.DecisionCheckpoint{Seq: seq, Head: head, SignedAt: Base.Add(time.Hour), NodeID: "n1", CertDER: k.Cert.Raw, Prev: prev}
		if err := c.Sign(k.Signer); err != nil {
			t.Fatal(err)
		}
		if err := dc.AppendDecisionCheckpoint(ctx, c); err != nil {
			t.Fatal(err)
		}
		prev = seq
	}
}

// RunDecisionChain checks the decision chain on a backend: numbering and
// links, concurrent appends, and the tamper matrix of decisions (deleted,
// edited, edited and re-hashed, reordered, removed at the end or start,
// rewritten consistently, checkpoints deleted or forged), each detected by
// VerifyDecisions and by VerifyAudit with its message.
func RunDecisionChain(t *testing.T, open func(t *testing.T) (storage.AuditStore, Tamperer)) {
	ctx := context.Background()
	t.Run("Intact", func(t *testing.T) {
		s, _ := open(t)
		k := NewAuditKey(t)
		decisionBatches(t, s, k)
		res, err := storage.VerifyDecisions(ctx, s.(storage.DecisionChainReader), k.Roots())
		if err != nil || !res.OK() || res.Checked != 35 || res.From != 1 || res.To != 35 || res.Checkpoints != 3 || res.LastCheckpoint != 30 {
			t.Fatalf("VerifyDecisions = %+v, %v", res, err)
		}
		ds, err := s.QueryDecisions(ctx, storage.DecisionFilter{Limit: 1})
		if err != nil || len(ds) != 1 || ds[0].Reason != "reason 3.4" {
			t.Fatalf("QueryDecisions = %+v, %v", ds, err)
		}
	})
	t.Run("ConcurrentWriters", func(t *testing.T) {
		s, _ := open(t)
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := range 10 {
					ds := make([]storage.Decision, 5)
					for j := range ds {
						ds[j] = storage.Decision{At: Base, NodeID: fmt.Sprintf("n%d", w), Caller: "c", Requested: "r", Reason: fmt.Sprint(i, j), Code: "OK", Allowed: true}
					}
					if err := s.AppendDecisions(ctx, ds); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		res, err := storage.VerifyDecisions(ctx, s.(storage.DecisionChainReader), nil)
		if err != nil || !res.OK() || res.Checked != 200 || res.To != 200 {
			t.Fatalf("4 writers x 50: VerifyDecisions = %+v, %v", res, err)
		}
	})
	t.Run("Pruned", func(t *testing.T) {
		s, _ := open(t)
		k := NewAuditKey(t)
		decisionBatches(t, s, k)
		// Decisions of batches 0 and 1 are before Base+20s: pruned up to
		// the checkpoint at 20, which stays with its decision.
		if _, err := s.Prune(ctx, Base.Add(25*time.Second)); err != nil {
			t.Fatal(err)
		}
		res, err := storage.VerifyDecisions(ctx, s.(storage.DecisionChainReader), k.Roots())
		if err != nil || !res.OK() || res.From != 20 || res.To != 35 || res.Checkpoints != 2 {
			t.Fatalf("after prune: VerifyDecisions = %+v, %v", res, err)
		}
	})
	rehash := func(from uint64, edit func(d *record.Decision)) func(s storage.AuditStore) []tamperStmt {
		return func(s storage.AuditStore) []tamperStmt {
			ds, err := s.(storage.DecisionChainReader).DecisionChain(ctx, 1, 100)
			if err != nil {
				t.Fatal(err)
			}
			var out []tamperStmt
			prev := ds[from-2].Hash
			for _, d := range ds[from-1:] {
				r := record.Decision{Seq: d.Seq, At: d.At, NodeID: d.NodeID, Caller: d.Caller, Requested: d.Requested, Allowed: d.Allowed, Code: d.Code, Reason: d.Reason}
				if d.Seq == from {
					edit(&r)
				}
				h := r.Hash(prev)
				out = append(out, sqlStmt("UPDATE authz_decisions SET allowed = ?, reason = ?, prev_hash = ?, hash = ? WHERE chain_seq = ?", r.Allowed, r.Reason, prev, h, int64(d.Seq)))
				prev = h
			}
			return out
		}
	}
	only := func(sts ...tamperStmt) func(storage.AuditStore) []tamperStmt {
		return func(storage.AuditStore) []tamperStmt { return sts }
	}
	cases := []struct {
		name     string
		edit     func(s storage.AuditStore) []tamperStmt
		firstBad uint64
		problem  string
		detail   string
	}{
		{"deleted decision", only(sqlStmt("DELETE FROM authz_decisions WHERE chain_seq = ?", 15)), 15, storage.ProblemDecisionDeleted,
			"decision 15 is missing: the chain goes from 14 to 16"},
		{"edited decision", only(sqlStmt("UPDATE authz_decisions SET allowed = ?, reason = ? WHERE chain_seq = ?", true, "entry e1", 7)), 7, storage.ProblemDecisionEdited,
			"decision 7 no longer hashes to its stored hash"},
		{"edited decision, code", only(sqlStmt("UPDATE authz_decisions SET code = ? WHERE chain_seq = ?", "Internal", 33)), 33, storage.ProblemDecisionEdited,
			"decision 33 no longer hashes"},
		{"edited and re-hashed", func(s storage.AuditStore) []tamperStmt {
			return rehash(7, func(d *record.Decision) { d.Allowed, d.Reason = true, "entry e1" })(s)[:1]
		}, 8, storage.ProblemDecisionBrokenLink, "decision 8 does not link to decision 7"},
		{"reordered", only(sqlStmt("UPDATE authz_decisions SET chain_seq = ? WHERE chain_seq = ?", -3, 3),
			sqlStmt("UPDATE authz_decisions SET chain_seq = ? WHERE chain_seq = ?", 3, 4),
			sqlStmt("UPDATE authz_decisions SET chain_seq = ? WHERE chain_seq = ?", 4, -3)), 3, storage.ProblemDecisionEdited, "decision 3 no longer hashes"},
		{"deleted at the end", only(sqlStmt("DELETE FROM authz_decisions WHERE chain_seq > ?", 25)), 26, storage.ProblemDecisionDeleted,
			"a signed decision checkpoint is at 30 but the chain ends at 25"},
		{"deleted at the start", only(sqlStmt("DELETE FROM authz_decisions WHERE chain_seq <= ?", 5)), 1, storage.ProblemDecisionDeleted,
			"decisions 1..5 are missing"},
		{"rewritten consistently", rehash(12, func(d *record.Decision) { d.Reason = "rewritten" }), 20, storage.ProblemDecisionCheckpointMismatch,
			"differs from the signed decision checkpoint"},
		{"deleted checkpoint", only(sqlStmt("DELETE FROM decision_checkpoints WHERE seq = ?", 20)), 20, storage.ProblemDecisionCheckpointMissing,
			"decision checkpoint 30 names 20 as the one before it"},
		{"deleted first checkpoint", only(sqlStmt("DELETE FROM decision_checkpoints WHERE seq = ?", 10)), 10, storage.ProblemDecisionCheckpointMissing,
			"decision checkpoint 20 names 10 as the one before it, which is missing"},
		{"forged checkpoint", only(sqlStmt("UPDATE decision_checkpoints SET node_id = ? WHERE seq = ?", "evil", 20)), 20, storage.ProblemDecisionCheckpointForged,
			"signature does not verify"},
	}
	for _, tc := range cases {
		t.Run("Tamper/"+tc.name, func(t *testing.T) {
			s, tam := open(t)
			k := NewAuditKey(t)
			decisionBatches(t, s, k)
			for _, st := range tc.edit(s) {
				if err := tam.Exec(ctx, st.q, st.args...); err != nil {
					t.Fatalf("tamper %q: %v", st.q, err)
				}
			}
			res, err := storage.VerifyDecisions(ctx, s.(storage.DecisionChainReader), k.Roots())
			if err != nil {
				t.Fatal(err)
			}
			if res.FirstBad != tc.firstBad || res.Problem != tc.problem || !strings.Contains(res.Detail, tc.detail) {
				t.Fatalf("VerifyDecisions = %d %q (%s), want %d %q (%s)", res.FirstBad, res.Problem, res.Detail, tc.firstBad, tc.problem, tc.detail)
			}
			all, err := storage.VerifyAudit(ctx, s, 0, 0, k.Roots())
			if err != nil || all.OK() || all.Problem != tc.problem || all.Decisions.FirstBad != tc.firstBad {
				t.Fatalf("VerifyAudit = %+v, %v; want the decision problem", all, err)
			}
		})
	}
}

func sqlStmt(q string, args ...any) tamperStmt { return tamperStmt{q, args} }
