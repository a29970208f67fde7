package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
)

// GenEvent returns the unsealed admin event record seq of the chain named
// salt (record/event.go): an ID, action, actor, subject, node, commit
// time and a JSON detail; NotBefore and NotAfter equal the commit time, as
// the journal sets them.
func GenEvent(salt string, seq uint64) *record.Record {
	g := Gen(salt, seq)
	h := sha256.Sum256(fmt.Appendf(nil, "event/%s/%d", salt, seq))
	id := strings.TrimLeft(hex.EncodeToString(h[:16]), "0")
	return &record.Record{
		Seq: seq, Serial: id, Action: []string{"entry.create", "token.revoke", "agent.ban"}[seq%3],
		SPIFFEID: g.SPIFFEID, AgentID: "spiffe://example.org/tier0/admin", NodeID: g.NodeID,
		NotBefore: g.CommittedAt, NotAfter: g.CommittedAt, CommittedAt: g.CommittedAt,
		Detail: fmt.Appendf(nil, `{"id":"e-%d","note":"caf\u00e9 \u0000"}`, seq),
	}
}

// MixedChain is Chain with an admin event record at every seq in events.
func MixedChain(salt string, n int, events ...uint64) []*record.Record {
	out := make([]*record.Record, n)
	prev := record.Genesis
	for i := range out {
		seq := uint64(i + 1)
		r := Gen(salt, seq)
		if slices.Contains(events, seq) {
			r = GenEvent(salt, seq)
		}
		prev = r.Seal(prev)
		out[i] = r
	}
	return out
}

// RunEvents checks that a store keeps admin event records exactly, lists
// them as kind admin, and that Verify names the first bad seq when one
// is deleted or edited.
func RunEvents(t *testing.T, open func(t *testing.T) (storage.Store, Tamperer)) {
	ctx := context.Background()
	t.Run("RoundTripAndKind", func(t *testing.T) {
		s, _ := open(t)
		c := MixedChain("events", 10, 3, 7)
		Append(t, s, c, 4)
		got := Collect(t, s, 1, 0)
		for i, r := range got {
			w := c[i]
			if !bytes.Equal(r.Canonical(), w.Canonical()) || !bytes.Equal(r.Hash, w.Hash) || !bytes.Equal(r.PrevHash, w.PrevHash) ||
				!r.NotBefore.Equal(w.NotBefore) || !r.NotAfter.Equal(w.NotAfter) || r.Kind() != w.Kind() {
				t.Fatalf("seq %d read back differs:\n got %+v\nwant %+v", r.Seq, r, c[i])
			}
		}
		q, err := s.Query(ctx, storage.Filter{Kind: storage.KindAdmin})
		if err != nil || !slices.Equal(seqs(q), []uint64{7, 3}) {
			t.Fatalf("Query(kind admin) = %v, %v; want [7 3]", seqs(q), err)
		}
		q, err = s.Query(ctx, storage.Filter{Kind: storage.KindX509})
		if err != nil || len(q) != 8 {
			t.Fatalf("Query(kind x509) = %v, %v; want 8 records", seqs(q), err)
		}
		if res, err := storage.Verify(ctx, s, 1, 0); err != nil || !res.OK() || res.Checked != 10 {
			t.Fatalf("Verify = %+v, %v", res, err)
		}
	})
	for _, tc := range []struct {
		name     string
		stmt     string
		args     []any
		firstBad uint64
		problem  string
	}{
		{"deleted admin-event record", "DELETE FROM issuance_records WHERE seq = 17", nil, 17, storage.ProblemMissing},
		{"admin-event action changed", "UPDATE issuance_records SET event_action = 'entry.delete' WHERE seq = 17", nil, 17, storage.ProblemModified},
		{"admin-event detail changed", "UPDATE issuance_records SET event_detail = ? WHERE seq = 17", []any{[]byte(`{"id":"e-0"}`)}, 17, storage.ProblemModified},
		{"admin-event actor changed", "UPDATE issuance_records SET agent_id = 'spiffe://example.org/tier0/agent/a0' WHERE seq = 17", nil, 17, storage.ProblemModified},
		{"admin-event turned into a certificate", "UPDATE issuance_records SET event_action = '' WHERE seq = 17", nil, 17, storage.ProblemModified},
		{"certificate turned into an event", "UPDATE issuance_records SET event_action = 'entry.create' WHERE seq = 18", nil, 18, storage.ProblemModified},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, tam := open(t)
			c := MixedChain("events", TamperN, 17, 30)
			Append(t, s, c, TamperN)
			if err := tam.Exec(ctx, tc.stmt, tc.args...); err != nil {
				t.Fatalf("tamper %q: %v", tc.stmt, err)
			}
			res, err := storage.Verify(ctx, s, 1, 0)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if res.FirstBad != tc.firstBad || res.Problem != tc.problem {
				t.Fatalf("Verify = first bad seq %d %q, want seq %d %q", res.FirstBad, res.Problem, tc.firstBad, tc.problem)
			}
		})
	}
}
