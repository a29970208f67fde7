package ha

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// FuzzFSMApply feeds arbitrary log entries to the FSM: it must never panic
// (invariant 8), and the journal it keeps must stay a valid hash chain
// whatever it accepted or refused.
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
		{cmdDeleteEntry, deleteEntryCmd{ID: "e1"}},
		{cmdConsumeToken, consumeTokenCmd{Hash: "00", Now: now}},
		{cmdSetBundle, map[string]any{"trust_domain": "example.org", "roots": [][]byte{{1, 2}}}},
		{cmdTrust, map[string]any{"op": "prune-jwt-keys", "now": now}},
		{cmdCheckpoint, map[string]any{"op": "exported", "seq": 3}},
		{0x7f, map[string]any{}},
		{0xff, map[string]any{}},
	}
	for _, s := range seeds {
		data, err := encodeCommand(s.typ, s.v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
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
		fsm.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: data})
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
	f.Fuzz(func(_ *testing.T, data []byte) {
		_, _ = InspectSnapshot(bytes.NewReader(data))
	})
}
