package ha

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tier0-ca/tier0/ca/record"
)

// FuzzFSMApply feeds arbitrary log entries to the FSM: it must never panic
// (invariant 8), the journal it keeps must stay a valid hash chain
// whatever it accepted or refused, and an entry that latched it diverged
// must have left the state as it was.
func FuzzFSMApply(f *testing.F) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	rec, _ := json.Marshal(toWire(testRecord("a")))
	seeds := []struct {
		typ byte
		v   any
	}{
		{cmdRecords, recordsCmd{Now: now, Recs: []json.RawMessage{rec}}},
		{cmdExported, map[string]any{"seq": 1}},
		{cmdCreateEntry, createEntryCmd{Entry: Entry{ID: "e1", Agent: "a", SPIFFEID: "spiffe://example.org/w", TTL: 30 * time.Minute}}},
		{cmdCreateEntryFederated, createEntryCmd{Entry: Entry{ID: "e2", Agent: "a", SPIFFEID: "spiffe://example.org/f", FederatesWith: []string{"p.example"}}}},
		{cmdDeleteEntry, deleteEntryCmd{ID: "e1"}},
		{cmdConsumeToken, consumeTokenCmd{Hash: "00", Now: now}},
		{cmdSetBundle, map[string]any{"trust_domain": "example.org", "roots": [][]byte{{1, 2}}}},
		{cmdTrust, map[string]any{"op": "prune-jwt-keys", "now": now}},
		{cmdCheckpoint, map[string]any{"op": "exported", "seq": 3}},
		{cmdLineage, lineageCmd{Lineage: record.Lineage{ClusterID: "c", ID: "l", BaseHash: record.Genesis, CreatedAt: now}}},
		{cmdLineage, lineageCmd{Lineage: record.Lineage{ClusterID: "c", ID: "l", BaseSeq: 1, BaseHash: make([]byte, 32), Parent: "p", CreatedAt: now}}},
		{cmdRecordAttestation, recordAttestationCmd{Attestation: Attestation{Agent: "a", Attestor: "k8s_psat", Selectors: []string{"k8s_psat:cluster:prod"}, Keys: []ReplayKey{{Key: "k8s_psat:pod_uid:prod:1"}, {Key: "t", Until: now}}}, Now: now}},
		{cmdCreateNodeEntry, createNodeEntryCmd{Entry: Entry{ID: "e3", SPIFFEID: "spiffe://example.org/fleet", NodeSelectors: []string{"k8s_psat:cluster:prod"}}}},
		{cmdCreateTokenBy, createTokenByCmd{createTokenCmd: createTokenCmd{Hash: tokenHash("t"), Agent: "a", ExpiresAt: now.Add(time.Hour), Now: now}, Creator: "spiffe://example.org/tier0/admin"}},
		{cmdAttest, attestCmd{Hash: tokenHash("t"), Now: now, Node: "n1"}},
		{cmdAttest, attestCmd{Subject: "a", Selectors: []string{"k8s_psat:cluster:prod"}, Now: now, Node: "n1"}},
		{cmdAgentRenewed, agentRenewedCmd{Subject: "a", Generation: 1, Serial: "ab", NotAfter: now.Add(time.Hour), Now: now, Node: "n1"}},
		{cmdAgentState, agentStateCmd{Subject: "a", Op: "ban", By: "x", Now: now}},
		{cmdAgentState, agentStateCmd{Subject: "a", Op: "unban", By: "x", Now: now}},
		{cmdRevokeToken, revokeTokenCmd{Hash: tokenHash("t"), By: "x", Now: now}},
		{0x7f, map[string]any{}},
		{0xff, map[string]any{}},
	}
	for _, s := range seeds {
		data, err := encodeCommand(s.typ, s.v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		if sealed, err := addDigest(data); err == nil {
			f.Add(sealed) // as the leader proposes it
		}
	}
	f.Add([]byte{})
	f.Add([]byte{cmdRecords, '{'})
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm := newFSM(slog.New(slog.NewTextHandler(io.Discard, nil)), newMetrics(nil))
		// A valid record first, so a fuzzed command meets a non-empty journal.
		first, _ := encodeCommand(cmdRecords, recordsCmd{Now: now, Recs: []json.RawMessage{rec}})
		if r := fsm.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: first}); r != nil {
			if _, isErr := r.(error); isErr {
				t.Fatalf("seed record refused: %v", r)
			}
		}
		var before bytes.Buffer
		_ = fsm.snapshot().write(&before)
		fsm.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: data})
		if fsm.divergence() != nil {
			var after bytes.Buffer
			_ = fsm.snapshot().write(&after)
			if !bytes.Equal(before.Bytes(), after.Bytes()) {
				t.Fatalf("latched diverged after %x but the state changed", data)
			}
		}
		if err := checkLineage(fsm.s.lineage, fsm.s.seq); err != nil {
			t.Fatalf("invalid lineage accepted from %x: %v", data, err)
		}
		tail := fsm.s.tail
		if len(tail) == 0 {
			return // everything exported: nothing left to check here
		}
		prev := tail[0].PrevHash
		for _, r := range tail {
			if err := r.Verify(prev); err != nil {
				t.Fatalf("journal broken after %x: %v", data, err)
			}
			prev = r.Hash
		}
		if !bytes.Equal(prev, fsm.s.head) || tail[len(tail)-1].Seq != fsm.s.seq {
			t.Fatalf("journal head/seq out of step with the tail after %x", data)
		}
	})
}

// FuzzInspectSnapshot parses arbitrary snapshot/backup payloads: errors are
// fine, panics are not.
func FuzzInspectSnapshot(f *testing.F) {
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":1,"journal":{"seq":2}}` + "\n" + `{"seq":1}`))
	f.Add([]byte{0xff, 0x00})
	f.Add([]byte(`{"version":1,"seq":0,"head":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","tail_len":0,"lineage":{"cluster_id":"c","lineage":"l","base_seq":0,"base_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","created_at":"2030-01-01T00:00:00Z"}}`))
	f.Fuzz(func(_ *testing.T, data []byte) {
		_, _ = InspectSnapshot(bytes.NewReader(data))
	})
}

// FuzzRewriteSnapshot rewrites arbitrary payloads into a new lineage (what
// `tier0 backup restore` without --store does): errors are fine, panics are not,
// and whatever it writes must inspect cleanly with the lineage set.
func FuzzRewriteSnapshot(f *testing.F) {
	src := newFSM(slog.New(slog.NewTextHandler(io.Discard, nil)), newMetrics(nil))
	rec, _ := json.Marshal(toWire(testRecord("a")))
	for i := range 3 {
		data, _ := encodeCommand(cmdRecords, recordsCmd{Now: time.Unix(int64(i), 0), Recs: []json.RawMessage{rec}})
		src.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data})
	}
	exp, _ := encodeCommand(cmdExported, exportedCmd{Seq: 1})
	src.Apply(&raft.Log{Index: 4, Type: raft.LogCommand, Data: exp})
	snap, _ := src.Snapshot()
	var buf bytes.Buffer
	if err := snap.(*fsmSnapshot).write(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(`{"version":1,"seq":0,"head":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","tail_len":0}`))
	at := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		info, err := RewriteSnapshot(bytes.NewReader(data), &out, nil, NewLineage(at))
		if err != nil {
			return
		}
		if _, ierr := InspectSnapshot(bytes.NewReader(data)); ierr != nil {
			return // a payload with a bad tail is copied through; restore inspects it first
		}
		got, err := InspectSnapshot(bytes.NewReader(out.Bytes()))
		if err != nil || got.Lineage == nil || got.Lineage.BaseSeq != info.ExportedSeq || got.Seq != info.Seq {
			t.Fatalf("rewritten payload: %+v, %v", got, err)
		}
	})
}
