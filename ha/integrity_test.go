package ha

import (
	"bytes"
	"encoding/hex"
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

func mustDigest(t testing.TB, cmd []byte) []byte {
	t.Helper()
	b, err := addDigest(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDigestSingleByteFlips flips every bit of every byte of a digested
// command: the check must either refuse it or hand back exactly the
// original content (the flip hit the member's name, so the entry reads as
// one without a digest, or the case of a hex letter of the digest).
// Nothing altered ever passes.
func TestDigestSingleByteFlips(t *testing.T) {
	orig := mustCommand(t, cmdCreateEntry, createEntryCmd{Entry{ID: "e1", Agent: "a", SPIFFEID: "spiffe://x/y"}})
	sealed := mustDigest(t, orig)
	if got, ok, err := checkDigest(sealed); err != nil || !ok || !bytes.Equal(got, orig) {
		t.Fatalf("round trip: %q %v %v", got, ok, err)
	}
	if !strings.HasSuffix(string(sealed), `"sum":"`+string(sealed[len(sealed)-66:len(sealed)-2])+`"}`) {
		t.Fatalf("digest member not at the end: %s", sealed)
	}
	caught, renamed := 0, 0
	for i := range sealed {
		for bit := range 8 {
			m := bytes.Clone(sealed)
			m[i] ^= 1 << bit
			got, ok, err := checkDigest(m)
			switch {
			case err != nil:
				if !errors.Is(err, errCannotApply) {
					t.Fatalf("byte %d bit %d: %v does not latch", i, bit, err)
				}
				caught++
			case ok:
				if !bytes.Equal(got, orig) {
					t.Fatalf("byte %d bit %d: altered entry passed the digest: %q", i, bit, got)
				}
			default:
				// Read as an entry without a digest: only the member's
				// own bytes may differ from the original.
				if !bytes.Equal(m[:len(m)-sumLen], orig[:len(orig)-1]) {
					t.Fatalf("byte %d bit %d: content altered and the digest not seen: %q", i, bit, m)
				}
				renamed++
			}
		}
	}
	t.Logf("%d flips refused, %d read as entries without a digest (content intact)", caught, renamed)
	if caught < 8*(len(sealed)-sumLen) {
		t.Fatalf("only %d flips caught", caught)
	}
}

// divergeCases are entries that f, as seedFSM built it (journal at seq
// 2), cannot apply.
func divergeCases(t *testing.T, f *fsm) []struct {
	name, reason string
	typ          byte
	data         []byte
} {
	entry := mustDigest(t, mustCommand(t, cmdCreateEntry, createEntryCmd{Entry{ID: "e9", Agent: "b", SPIFFEID: "spiffe://x/z"}}))
	flipped := bytes.Clone(entry)
	flipped[bytes.Index(flipped, []byte("spiffe://x/z"))+10] = 'q'
	ignorable := bytes.Clone(entry)
	ignorable[0] |= ignorableFlag
	notHex := bytes.Clone(entry)
	notHex[len(notHex)-3] = 'g'
	raw, _ := json.Marshal(toWire(testRecord("d")))
	js := f.s.journalStatus()
	good := &recordsExpect{Term: 3, Seq: js.Seq, Prev: js.Head}
	good.Head, _ = sealBatch([]*record.Record{mustWire(t, raw).record()}, js.Seq, js.Head, f.s.lastCommit, time.Date(2030, 1, 1, 0, 0, 1, 0, time.UTC))
	wrongHead := *good
	wrongHead.Head = bytes.Repeat([]byte{7}, 32)
	elsewhere := *good
	elsewhere.Seq = 1
	recs := func(x *recordsExpect) []byte {
		b, err := encodeRecords(time.Date(2030, 1, 1, 0, 0, 1, 0, time.UTC), x, []json.RawMessage{raw})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return []struct {
		name, reason string
		typ          byte
		data         []byte
	}{
		{"empty", "empty command", 0, nil},
		{"unknown type", "unknown command type (is this node older than the leader?)", 0x55, []byte{0x55, '{', '}'}},
		{"unknown type with a digest", "unknown command type (is this node older than the leader?)", 0x55, mustDigest(t, []byte(string(rune(0x55))+`{"a":1}`))},
		{"records: garbage", "ha: fsm: decode records: cannot apply: invalid character 'Þ' looking for beginning of value", cmdRecords, []byte{cmdRecords, 0xde, 0xad}},
		{"records: trailing data", "ha: fsm: decode records: cannot apply: invalid character '{' after top-level value", cmdRecords, []byte{cmdRecords, '{', '}', '{'}},
		{"records: bad record", "ha: fsm: decode record: cannot apply: json: cannot unmarshal number into Go value of type ha.wireRecord", cmdRecords, []byte(string(cmdRecords) + `{"recs":[{"serial":"1","spiffe_id":"s"},7]}`)},
		{"entry: wrong type", "ha: fsm: decode create entry: cannot apply: json: cannot unmarshal string into Go struct field Entry.entry.ttl of type time.Duration", cmdCreateEntry, []byte(string(cmdCreateEntry) + `{"entry":{"ttl":"x"}}`)},
		{"digest: a flipped content byte", "integrity: SHA-256 of the entry does not match the digest the leader computed (altered on disk or in transit): cannot apply", cmdCreateEntry, flipped},
		{"digest: the ignorable bit flipped in the type", "integrity: SHA-256 of the entry does not match the digest the leader computed (altered on disk or in transit): cannot apply", cmdCreateEntry | ignorableFlag, ignorable},
		{"digest: not hex", "integrity: digest member is not hex: cannot apply", cmdCreateEntry, notHex},
		{"records: chain head differs from the leader's", "ha: fsm: records: the batch seals to head " + hex.EncodeToString(good.Head) + " here, to 0707070707070707070707070707070707070707070707070707070707070707 on the leader: cannot apply", cmdRecords, recs(&wrongHead)},
		{"records: journal elsewhere than the leader's", "ha: fsm: records: the journal here is at seq 2 head " + hex.EncodeToString(js.Head) + ", the leader proposed after seq 1 head " + hex.EncodeToString(js.Head) + ": cannot apply", cmdRecords, recs(&elsewhere)},
	}
}

func mustWire(t *testing.T, raw []byte) *wireRecord {
	t.Helper()
	var w wireRecord
	if err := json.Unmarshal(raw, &w); err != nil {
		t.Fatal(err)
	}
	return &w
}

// TestFSMDivergenceLatch: an entry the node cannot apply latches it: the
// response names the index and type and wraps ErrDiverged and
// ErrUnavailable (never ErrInvalid: the client did nothing wrong), the
// state stays as before the entry, later entries are not applied, no
// snapshot is taken, and only a restored state clears the latch.
func TestFSMDivergenceLatch(t *testing.T) {
	for i, tc := range divergeCases(t, newTestFSM(t)) {
		t.Run(tc.name, func(t *testing.T) {
			f := newTestFSM(t)
			seedFSM(t, f)
			tc := divergeCases(t, f)[i] // against this state
			before := stateDump(t, f)
			resp := f.Apply(&raft.Log{Index: 7, Term: 3, Type: raft.LogCommand, Data: tc.data})
			err, _ := resp.(error)
			want := fmt.Sprintf("ha: diverged at raft index 7 (command type 0x%02x): ", tc.typ) + tc.reason +
				"; this node stopped applying the raft log and refuses writes until it is repaired"
			if err == nil || err.Error() != want {
				t.Fatalf("response %v\nwant %q", resp, want)
			}
			if !errors.Is(err, ErrDiverged) || !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalid) {
				t.Fatalf("%v: want ErrDiverged and ErrUnavailable, not ErrInvalid", err)
			}
			if got := f.divergence(); got == nil || got.Error() != want {
				t.Fatalf("latch %v", got)
			}
			if g := metricValue(t, f.m.diverged); g != 1 {
				t.Fatalf("tier0_raft_diverged = %v", g)
			}
			// Later entries are not applied, even valid ones.
			raw, _ := json.Marshal(toWire(testRecord("later")))
			later, _ := encodeRecords(time.Date(2030, 1, 1, 0, 0, 2, 0, time.UTC), nil, []json.RawMessage{raw})
			resp = f.Apply(&raft.Log{Index: 8, Term: 3, Type: raft.LogCommand, Data: later})
			if err, _ := resp.(error); err == nil || !errors.Is(err, ErrDiverged) || !strings.HasPrefix(err.Error(), "ha: fsm: entry 8 not applied: ha: diverged at raft index 7 ") {
				t.Fatalf("entry after the latch: %v", resp)
			}
			if after := stateDump(t, f); !bytes.Equal(after, before) {
				t.Fatalf("state changed:\n%s\n%s", before, after)
			}
			if _, err := f.Snapshot(); err == nil || !errors.Is(err, ErrDiverged) {
				t.Fatalf("snapshot of a diverged state: %v", err)
			}
			// A whole new state (the leader's snapshot) clears the latch.
			if err := f.Restore(io.NopCloser(bytes.NewReader(before))); err != nil {
				t.Fatal(err)
			}
			if f.divergence() != nil || metricValue(t, f.m.diverged) != 0 {
				t.Fatal("restore did not clear the latch")
			}
			if _, ok := f.Apply(&raft.Log{Index: 9, Term: 3, Type: raft.LogCommand, Data: later}).([]*record.Record); !ok {
				t.Fatal("entry after the restore not applied")
			}
		})
	}
}

// TestFSMExpectedHead: a batch that carries the leader's expected position
// applies when it matches; one appended in another term than it was
// computed for is applied without the comparison (the leader's view may be
// stale then, and every node would refuse alike).
func TestFSMExpectedHead(t *testing.T) {
	f := newTestFSM(t)
	seedFSM(t, f)
	js := f.s.journalStatus()
	raw, _ := json.Marshal(toWire(testRecord("x")))
	now := time.Date(2030, 1, 1, 0, 0, 1, 0, time.UTC)
	x := &recordsExpect{Term: 4, Seq: js.Seq, Prev: js.Head}
	x.Head, _ = sealBatch([]*record.Record{mustWire(t, raw).record()}, js.Seq, js.Head, f.s.lastCommit, now)
	data, _ := encodeRecords(now, x, []json.RawMessage{raw})
	recs, ok := f.Apply(&raft.Log{Index: 8, Term: 4, Type: raft.LogCommand, Data: data}).([]*record.Record)
	if !ok || !bytes.Equal(recs[0].Hash, x.Head) || recs[0].Seq != js.Seq+1 {
		t.Fatalf("matching batch: %v", recs)
	}
	stale := *x // now behind the journal, but for term 3
	stale.Term = 3
	data, _ = encodeRecords(now, &stale, []json.RawMessage{raw})
	if _, ok := f.Apply(&raft.Log{Index: 9, Term: 4, Type: raft.LogCommand, Data: data}).([]*record.Record); !ok || f.divergence() != nil {
		t.Fatalf("batch for another term: latched %v", f.divergence())
	}
}

// TestEveryCommandIsChecked: every type the FSM applies, except records
// (checked record by record by Commit and handleForward), has a payload
// the leader checks before proposing; otherwise the leader would refuse
// to propose it, or a forward of it would reach the log unchecked.
func TestEveryCommandIsChecked(t *testing.T) {
	for typ := range handlers {
		if _, ok := payloads[typ]; !ok && typ != cmdRecords {
			t.Errorf("command 0x%02x has a handler but no entry in payloads", typ)
		}
	}
	for typ := range payloads {
		if _, ok := handlers[typ]; !ok {
			t.Errorf("command 0x%02x has a payload but no handler", typ)
		}
	}
}
