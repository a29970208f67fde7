package auditexport

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/internal/tlog"
	"github.com/tier0-ca/tier0/storage"
	"github.com/tier0-ca/tier0/storage/sqlite"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

// exportOf returns the export of a store of 30 real SVID records (every
// fifth a JWT-SVID), chain checkpoints at 10 and 30 and tree checkpoints
// of the same sizes, and 25 decisions with decision checkpoints at 10 and
// 20.
func exportOf(t *testing.T, k *storagetest.AuditKey) []byte {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.New(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "r.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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
	var dprev uint64
	for b, n := range []int{10, 10, 5} {
		var ds []storage.Decision
		for i := range n {
			ds = append(ds, storage.Decision{At: storagetest.Base.Add(time.Duration(b*10+i) * time.Second), NodeID: "n1",
				Caller: "spiffe://example.org/tier0/agent/a1", Requested: "spiffe://example.org/tier0/admin", Code: "InvalidArgument", Reason: "reserved"})
		}
		if err := s.AppendDecisions(ctx, ds); err != nil {
			t.Fatal(err)
		}
		seq, head, err := s.DecisionHead(ctx)
		if err != nil || n < 10 {
			continue
		}
		c := record.DecisionCheckpoint{Seq: seq, Head: head, SignedAt: storagetest.Base.Add(time.Hour), NodeID: "n1", CertDER: k.Cert.Raw, Prev: dprev}
		if err := c.Sign(k.Signer); err != nil {
			t.Fatal(err)
		}
		if err := s.AppendDecisionCheckpoint(ctx, c); err != nil {
			t.Fatal(err)
		}
		dprev = seq
	}
	var buf bytes.Buffer
	n, err := Write(ctx, &buf, s, k.Roots(), time.Now())
	if err != nil || n != 30 {
		t.Fatalf("Write = %d, %v", n, err)
	}
	return buf.Bytes()
}

// edit applies fn to line i (0: the header) decoded as a JSON object.
func edit(t *testing.T, raw []byte, i int, fn func(m map[string]any)) []byte {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[i]), &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	b, _ := json.Marshal(m)
	lines[i] = string(b)
	return []byte(strings.Join(lines, "\n") + "\n")
}

func sub(m map[string]any, k string) map[string]any { return m[k].(map[string]any) }

func TestExportVerify(t *testing.T) {
	ctx := context.Background()
	k := storagetest.NewAuditKey(t)
	raw := exportOf(t, k)
	// lines: 0 header, 1..30 records, 31..32 checkpoints, 33..34 tree
	// checkpoints, 35..59 decisions 1..25, 60..61 decision checkpoints
	lines := func(edit func(l []string) []string) func() []byte {
		return func() []byte {
			l := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
			return []byte(strings.Join(edit(l), "\n") + "\n")
		}
	}
	tests := []struct {
		name    string
		raw     func() []byte
		seq     uint64 // a decision's seq for the decision problems
		problem string
	}{
		{"decision line deleted", lines(func(l []string) []string { return append(l[:39:39], l[40:]...) }), 5, storage.ProblemDecisionDeleted},
		{"decision edited", func() []byte {
			return edit(t, raw, 41, func(m map[string]any) { sub(m, "decision")["allowed"] = true })
		}, 7, storage.ProblemDecisionEdited},
		{"decision lines swapped", lines(func(l []string) []string { l[45], l[46] = l[46], l[45]; return l }), 11, storage.ProblemDecisionDeleted},
		{"decision checkpoint deleted", lines(func(l []string) []string { return append(l[:60:60], l[61:]...) }), 10, storage.ProblemDecisionCheckpointMissing},
		{"decision checkpoint edited", func() []byte {
			return edit(t, raw, 60, func(m map[string]any) { sub(m, "decision_checkpoint")["node"] = "evil" })
		}, 10, storage.ProblemDecisionCheckpointForged},
		{"decisions after a checkpoint deleted", lines(func(l []string) []string { return append(l[:50:50], l[60:]...) }), 16, storage.ProblemDecisionDeleted},
		{"intact", func() []byte { return raw }, 0, ""},
		{"record field edited", func() []byte {
			return edit(t, raw, 7, func(m map[string]any) { sub(m, "record")["spiffe_id"] = "spiffe://example.org/evil" })
		}, 7, storage.ProblemModified},
		{"leaf hash edited", func() []byte {
			return edit(t, raw, 12, func(m map[string]any) { sub(m, "record")["leaf_hash"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" })
		}, 12, ProblemLeafHash},
		{"record line deleted", func() []byte {
			lines := strings.Split(string(raw), "\n")
			return []byte(strings.Join(append(lines[:5:5], lines[6:]...), "\n"))
		}, 5, storage.ProblemMissing},
		{"record lines swapped", func() []byte {
			lines := strings.Split(string(raw), "\n")
			lines[3], lines[4] = lines[4], lines[3]
			return []byte(strings.Join(lines, "\n"))
		}, 3, storage.ProblemMissing},
		{"checkpoint head edited", func() []byte {
			return edit(t, raw, 31, func(m map[string]any) { sub(m, "checkpoint")["head"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" })
		}, 10, storage.ProblemForgedCheckpoint},
		{"tree checkpoint note edited", func() []byte {
			return edit(t, raw, 33, func(m map[string]any) {
				tc := sub(m, "tree_checkpoint")
				note, _ := base64.StdEncoding.DecodeString(tc["note"].(string))
				tc["note"] = base64.StdEncoding.EncodeToString(bytes.Replace(note, []byte("\n10\n"), []byte("\n11\n"), 1))
			})
		}, 10, ProblemForgedTreeCheckpoint},
		{"certificate column edited and re-hashed", func() []byte {
			// The attacker re-seals the chain from seq 20 on: the signed
			// checkpoint at 30 catches the rewrite (from 11, after the last
			// good checkpoint).
			e, err := Read(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			e.recs[19].Serial = "deadbeef"
			prev := e.recs[18].Hash
			for i := 19; i < len(e.recs); i++ {
				prev = e.recs[i].Seal(prev)
				e.leaves[i] = tlog.LeafHash(e.recs[i])
			}
			var buf bytes.Buffer
			if _, err := Write(ctx, &buf, exportSource{e}, k.Roots(), time.Now()); err != nil {
				t.Fatal(err)
			}
			return buf.Bytes()
		}, 11, storage.ProblemCheckpointMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Read(bytes.NewReader(tc.raw()))
			if err != nil {
				t.Fatal(err)
			}
			res, trees, err := Verify(ctx, e, k.Roots())
			if err != nil {
				t.Fatal(err)
			}
			if tc.problem == "" {
				if !res.OK() || trees != 2 || res.Checkpoints != 2 || res.Checked != 30 || res.Decisions.Checked != 25 || res.Decisions.Checkpoints < 1 {
					t.Fatalf("intact export: %+v, %d tree checkpoints", res, trees)
				}
				return
			}
			if strings.Contains(tc.problem, "decision") {
				if res.FirstBad != 0 || res.Decisions.FirstBad != tc.seq || res.Problem != tc.problem {
					t.Fatalf("got decision %d %q (%s), want decision %d %q", res.Decisions.FirstBad, res.Problem, res.Detail, tc.seq, tc.problem)
				}
				t.Logf("detected: %s: %s", res.Problem, res.Detail)
				return
			}
			if res.FirstBad != tc.seq || res.Problem != tc.problem {
				t.Fatalf("got seq %d %q (%s), want seq %d %q", res.FirstBad, res.Problem, res.Detail, tc.seq, tc.problem)
			}
			t.Logf("detected: %s: %s", res.Problem, res.Detail)
		})
	}
	// Verified with another bundle: nothing signed verifies.
	e, _ := Read(bytes.NewReader(raw))
	if res, _, _ := Verify(ctx, e, storagetest.NewAuditKey(t).Roots()); res.OK() {
		t.Fatal("export verified against another bundle")
	}
	if _, err := Read(strings.NewReader("{\"format\":\"csv\"}\n")); err == nil {
		t.Fatal("Read accepted another format")
	}
}

// exportSource re-exports a loaded export (Write's Source).
type exportSource struct{ *Export }

func (s exportSource) AppendTreeCheckpoint(context.Context, storage.TreeCheckpoint) error { return nil }
func (s exportSource) TreeCheckpoints(context.Context) ([]storage.TreeCheckpoint, error) {
	return s.trees, nil
}
