package ha

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tier0-ca/tier0/ca/record"
)

func newTestFSM(t *testing.T) *fsm {
	return newFSM(testLogger(t), newMetrics(nil))
}

func applyData(f *fsm, data []byte) any {
	return f.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: data})
}

func mustCommand(t *testing.T, typ byte, v any) []byte {
	t.Helper()
	b, err := encodeCommand(typ, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stateDump is a deterministic rendering of the whole FSM state.
func stateDump(t *testing.T, f *fsm) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := f.snapshot().write(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func seedFSM(t *testing.T, f *fsm) {
	t.Helper()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	raw, _ := json.Marshal(toWire(testRecord("seed")))
	data, err := encodeRecords(now, nil, []json.RawMessage{raw, raw})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range [][]byte{
		data,
		mustCommand(t, cmdCreateEntry, createEntryCmd{Entry{ID: "e1", Agent: "a", SPIFFEID: "spiffe://x/y"}}),
		mustCommand(t, cmdCreateToken, createTokenCmd{Hash: tokenHash("t"), Agent: "a", ExpiresAt: now.Add(time.Hour), Now: now}),
		mustCommand(t, cmdSetBundle, setBundleCmd{TrustDomain: "x", Roots: [][]byte{{1}}}),
	} {
		if err, ok := applyData(f, d).(error); ok {
			t.Fatalf("seed: %v", err)
		}
	}
}

// TestFSMRefusals: commands every node refuses alike are error responses
// that leave the state unchanged and do not latch the node.
func TestFSMRefusals(t *testing.T) {
	f := newTestFSM(t)
	seedFSM(t, f)
	before := stateDump(t, f)
	for _, tc := range []struct {
		name    string
		data    []byte
		wantErr string // "" = skipped (nil response)
	}{
		{"ignorable unknown", []byte{0x80 | 0x55, '{', '}'}, ""},
		{"ignorable unknown, garbage payload", []byte{0xff, 0x00, 0x01}, ""},
		{"records: invalid record", []byte(string(cmdRecords) + `{"recs":[{"serial":"1","spiffe_id":"s"},{}]}`), "ha: record: serial and spiffe id are required: ha: invalid argument"},
		{"exported beyond seq", mustCommand(t, cmdExported, exportedCmd{Seq: 3}), "ha: fsm: exported seq 3 is beyond journal seq 2: ha: invalid argument"},
		{"entry: missing fields", mustCommand(t, cmdCreateEntry, createEntryCmd{Entry{ID: "e2"}}), "ha: create entry: id, agent and spiffe id are required: ha: invalid argument"},
		{"entry: duplicate", mustCommand(t, cmdCreateEntry, createEntryCmd{Entry{ID: "e2", Agent: "a", SPIFFEID: "spiffe://x/y"}}), "ha: create entry: spiffe://x/y for a: ha: already exists"},
		{"delete: unknown", mustCommand(t, cmdDeleteEntry, deleteEntryCmd{ID: "nope"}), `ha: delete entry "nope": ha: not found`},
		{"token: bad hash", mustCommand(t, cmdCreateToken, createTokenCmd{Hash: "ABC"}), "ha: token hash must be 64 hex characters: ha: invalid argument"},
		{"consume: unknown", mustCommand(t, cmdConsumeToken, consumeTokenCmd{Hash: tokenHash("u")}), "ha: consume token: ha: join token invalid"},
		{"bundle: empty", mustCommand(t, cmdSetBundle, setBundleCmd{TrustDomain: "x"}), "ha: set bundle: trust domain and at least one root are required: ha: invalid argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := applyData(f, tc.data)
			err, isErr := resp.(error)
			switch {
			case tc.wantErr == "" && resp != nil:
				t.Fatalf("response %v, want nil", resp)
			case tc.wantErr != "" && (!isErr || err.Error() != tc.wantErr):
				t.Fatalf("response %v\nwant error %q", resp, tc.wantErr)
			}
			if after := stateDump(t, f); !bytes.Equal(after, before) {
				t.Fatalf("state changed:\n%s\n%s", before, after)
			}
			if err := f.divergence(); err != nil {
				t.Fatalf("a refusal latched the node: %v", err)
			}
		})
	}
	// Non-command log types are not the FSM's business.
	if resp := f.Apply(&raft.Log{Type: raft.LogNoop, Data: []byte{0x55}}); resp != nil {
		t.Fatalf("noop: %v", resp)
	}
}

func TestFSMCommittedAtNeverGoesBack(t *testing.T) {
	f := newTestFSM(t)
	t1 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	raw, _ := json.Marshal(toWire(testRecord("a")))
	for _, now := range []time.Time{t1, t1.Add(-time.Second)} { // second leader's clock is behind
		data, _ := encodeRecords(now, nil, []json.RawMessage{raw})
		recs, ok := applyData(f, data).([]*record.Record)
		if !ok || !recs[0].CommittedAt.Equal(t1) {
			t.Fatalf("CommittedAt = %v, want %v", recs[0].CommittedAt, t1)
		}
	}
}

func TestSnapshotRoundTripAndCorruption(t *testing.T) {
	f := newTestFSM(t)
	seedFSM(t, f)
	dump := stateDump(t, f)

	g := newTestFSM(t)
	if err := g.Restore(io.NopCloser(bytes.NewReader(dump))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if again := stateDump(t, g); !bytes.Equal(again, dump) {
		t.Fatalf("round trip differs:\n%s\n%s", dump, again)
	}

	lines := strings.SplitAfter(string(dump), "\n")
	for _, tc := range []struct{ name, data, wantErr string }{
		{"empty", "", "ha: restore: header: EOF"},
		{"truncated tail", lines[0] + lines[1], "ha: restore: record 2 of 2: EOF"},
		{"edited record", lines[0] + strings.Replace(lines[1], `"Serial":"`, `"Serial":"f`, 1) + lines[2], "ha: restore: record: chain broken: seq 1: hash does not match contents (record modified)"},
		{"trailing data", string(dump) + "{}", "ha: restore: trailing data after 2 records"},
		{"bad version", strings.Replace(string(dump), `"version":1`, `"version":9`, 1), "ha: restore: unsupported snapshot version 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestFSM(t)
			err := h.Restore(io.NopCloser(strings.NewReader(tc.data)))
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("Restore: %v\nwant %q", err, tc.wantErr)
			}
			if js := h.s.journalStatus(); js.Seq != 0 {
				t.Fatalf("failed restore changed state: %+v", js)
			}
		})
	}
}

func TestApplyErrorsTranslated(t *testing.T) {
	n := startNode(t, t.TempDir(), newTestClock())
	ctx := context.Background()
	last := n.raft.LastIndex()
	// The leader checks its own commands as it checks forwarded ones: an
	// unknown type (ignorable or not) never reaches the log.
	for _, data := range [][]byte{{0x42, '{', '}'}, {0xc2, '{', '}'}} {
		if _, err := n.applyRaw(ctx, "test", data); !errors.Is(err, ErrInvalid) || err.Error() != fmt.Sprintf("ha: command: unknown command type 0x%02x: ha: invalid argument", data[0]) {
			t.Fatalf("unknown type 0x%02x: %v", data[0], err)
		}
	}
	if got := n.raft.LastIndex(); got != last {
		t.Fatalf("refused commands reached the log: last index %d -> %d", last, got)
	}
	// A refusal by the FSM comes back as the response.
	if err := n.DeleteEntry(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete unknown entry: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.CreateEntry(ctx, Entry{Agent: "a", SPIFFEID: "s"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after close: %v, want ErrUnavailable", err)
	}
}
