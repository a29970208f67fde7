package ha

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	waltypes "github.com/hashicorp/raft-wal/types"

	"github.com/tier0-ca/tier0/ca/record"
)

func commitOne(t *testing.T, n *Node, agent string) (*record.Record, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := testRecord(agent)
	return r, n.Commit(ctx, []*record.Record{r})
}

// TestNodeDivergedRefusesWrites: a committed entry that does not match its
// digest (as if altered on disk) latches the node: Health names the index,
// every write answers ErrDiverged (Unavailable) without reaching the log,
// backups refuse, and a restart replays into the same latch.
func TestNodeDivergedRefusesWrites(t *testing.T) {
	dir := t.TempDir()
	clock := newTestClock()
	n := startNode(t, dir, clock)
	if _, err := commitOne(t, n, "a"); err != nil {
		t.Fatal(err)
	}
	if err := n.Health(); err != nil {
		t.Fatalf("healthy node: %v", err)
	}
	bad := mustDigest(t, mustCommand(t, cmdCreateEntry, createEntryCmd{Entry{ID: "e1", Agent: "a", SPIFFEID: "spiffe://x/y"}}))
	bad[bytes.Index(bad, []byte("spiffe://x/y"))+9] = 'z'
	fut := n.raft.Apply(bad, time.Second) // as if altered on disk after the leader's check
	if err := fut.Error(); err != nil {
		t.Fatal(err)
	}
	idx := fut.Index()
	want := fmt.Sprintf("ha: diverged at raft index %d (command type 0x03): integrity: SHA-256 of the entry does not match the digest the leader computed (altered on disk or in transit): cannot apply; this node stopped applying the raft log and refuses writes until it is repaired", idx)
	if err, _ := fut.Response().(error); err == nil || err.Error() != want {
		t.Fatalf("response %v\nwant %s", fut.Response(), want)
	}
	if err := n.Health(); err == nil || err.Error() != want || !errors.Is(err, ErrDiverged) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Health() = %v", err)
	}
	if g := metricValue(t, n.m.diverged); g != 1 {
		t.Fatalf("tier0_raft_diverged = %v", g)
	}
	last := n.raft.LastIndex()
	if _, err := commitOne(t, n, "b"); !errors.Is(err, ErrDiverged) || err.Error() != "ha: commit: "+want {
		t.Fatalf("Commit on a diverged node: %v", err)
	}
	if _, err := n.CreateEntry(context.Background(), Entry{Agent: "a", SPIFFEID: "spiffe://x/w"}); !errors.Is(err, ErrDiverged) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("CreateEntry on a diverged node: %v", err)
	}
	if _, err := n.handleForward(context.Background(), ForwardApply, mustCommand(t, cmdDeleteEntry, deleteEntryCmd{ID: "x"})); !errors.Is(err, ErrDiverged) {
		t.Fatalf("forward to a diverged leader: %v", err)
	}
	if got := n.raft.LastIndex(); got != last {
		t.Fatalf("refused writes reached the log: last index %d -> %d", last, got)
	}
	if _, _, err := n.Backup(context.Background()); err == nil || !strings.Contains(err.Error(), "ha: snapshot: refused") {
		t.Fatalf("backup of a diverged node: %v", err)
	}
	js := n.JournalStatus()

	// The latch lives in the log: a restart replays into it.
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = startNode(t, dir, clock)
	if err := n.Health(); err == nil || err.Error() != want {
		t.Fatalf("after restart: Health() = %v\nwant %s", err, want)
	}
	if got := n.JournalStatus(); got.Seq != js.Seq || !bytes.Equal(got.Head, js.Head) {
		t.Fatalf("journal after restart %+v, want %+v", got, js)
	}
}

// TestCommitCarriesDigestAndExpectedHead: a records entry in the log has
// the leader's digest and the journal position it computed, which the
// FSM reached.
func TestCommitCarriesDigestAndExpectedHead(t *testing.T) {
	n := startNode(t, t.TempDir(), newTestClock())
	prev := record.Genesis
	for i := range 3 {
		r, err := commitOne(t, n, "x")
		if err != nil {
			t.Fatal(err)
		}
		var l raft.Log
		if err := n.logs.GetLog(n.raft.LastIndex(), &l); err != nil {
			t.Fatal(err)
		}
		cmd, sealed, err := checkDigest(l.Data)
		if err != nil || !sealed || cmd[0] != cmdRecords {
			t.Fatalf("entry %d: digest %v %v, type 0x%02x", l.Index, sealed, err, l.Data[0])
		}
		var c recordsCmd
		if err := json.Unmarshal(cmd[1:], &c); err != nil {
			t.Fatal(err)
		}
		x := c.Expect
		if x == nil || x.Term != l.Term || x.Seq != uint64(i) || !bytes.Equal(x.Prev, prev) || !bytes.Equal(x.Head, r.Hash) {
			t.Fatalf("entry %d (term %d): expect %+v, record seq %d hash %x", l.Index, l.Term, x, r.Seq, r.Hash)
		}
		prev = r.Hash
	}
}

// TestHandleForwardValidates: the leader refuses a forwarded command that
// it would not propose itself, and nothing reaches the log.
func TestHandleForwardValidates(t *testing.T) {
	n := startNode(t, t.TempDir(), newTestClock())
	ctx := context.Background()
	tampered := mustDigest(t, mustCommand(t, cmdDeleteEntry, deleteEntryCmd{ID: "abc"}))
	tampered[bytes.Index(tampered, []byte("abc"))] = 'x'
	last := n.raft.LastIndex()
	for _, tc := range []struct {
		name    string
		kind    byte
		payload []byte
		wantErr string
	}{
		{"unknown kind", 9, []byte("{}"), "ha: forward kind 9: ha: invalid argument"},
		{"empty command", ForwardApply, nil, "ha: forwarded apply: ha: command: empty: ha: invalid argument"},
		{"unknown type", ForwardApply, []byte{0x66, '{', '}'}, "ha: forwarded apply: ha: command: unknown command type 0x66: ha: invalid argument"},
		{"unknown ignorable type", ForwardApply, []byte{0xe6, '{', '}'}, "ha: forwarded apply: ha: command: unknown command type 0xe6: ha: invalid argument"},
		{"records through apply", ForwardApply, []byte(string(cmdRecords) + `{"recs":[]}`), "ha: forwarded apply: ha: command: records go through commit: ha: invalid argument"},
		{"garbage payload", ForwardApply, []byte{cmdCreateEntry, 0xde, 0xad}, "ha: forwarded apply: ha: command 0x03: ha: invalid argument: invalid character 'Þ' looking for beginning of value"},
		{"wrong shape", ForwardApply, []byte(string(cmdCreateEntry) + `{"entry":[1,2]}`), "ha: forwarded apply: ha: command 0x03: ha: invalid argument: json: cannot unmarshal array into Go struct field createEntryCmd.entry of type ha.Entry"},
		{"fails the type's checks", ForwardApply, mustCommand(t, cmdCreateEntry, createEntryCmd{Entry{ID: "e"}}), "ha: forwarded apply: ha: create entry: id, agent and spiffe id are required: ha: invalid argument"},
		{"unknown op", ForwardApply, mustCommand(t, cmdTrust, trustCmd{Op: "grant-everything"}), `ha: forwarded apply: ha: trust: unknown op "grant-everything": ha: invalid argument`},
		{"altered in transit", ForwardApply, tampered, "ha: forwarded apply: ha: command: integrity: SHA-256 of the entry does not match the digest the leader computed (altered on disk or in transit): cannot apply: ha: invalid argument"},
		{"commit: no records", ForwardCommit, []byte(`[]`), "ha: forwarded commit: want 1..1024 records: ha: invalid argument"},
		{"commit: invalid record", ForwardCommit, []byte(`[{"serial":"1"}]`), "ha: forwarded commit: record 0: ha: record: serial and spiffe id are required: ha: invalid argument"},
		{"membership: no id", ForwardMembership, []byte(`{"op":"remove"}`), "ha: membership remove: id is required: ha: invalid argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := n.handleForward(ctx, tc.kind, tc.payload)
			if err == nil || err.Error() != tc.wantErr || !errors.Is(err, ErrInvalid) {
				t.Fatalf("handleForward: %v\nwant %s", err, tc.wantErr)
			}
		})
	}
	if got := n.raft.LastIndex(); got != last {
		t.Fatalf("refused forwards reached the log: last index %d -> %d", last, got)
	}
	// A valid forward is applied, with the leader's digest.
	out, err := n.handleForward(ctx, ForwardApply, mustCommand(t, cmdCreateEntry, createEntryCmd{Entry{ID: "e1", Agent: "a", SPIFFEID: "spiffe://x/y"}}))
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := decodeResponse(out); err != nil || resp.(Entry).ID != "e1" {
		t.Fatalf("valid forward: %v %v", resp, err)
	}
	var l raft.Log
	if err := n.logs.GetLog(n.raft.LastIndex(), &l); err != nil {
		t.Fatal(err)
	}
	if _, sealed, err := checkDigest(l.Data); !sealed || err != nil {
		t.Fatalf("forwarded command in the log without the leader's digest: %v", err)
	}
}

// walFaults injects write faults under the node's log store: StoreLogs
// fails with err while it is set, and WAL instances opened before stuck
// was set answer raft-wal's ErrSealed (what v0.4 does after a segment
// rotation failed for lack of space).
type walFaults struct {
	err   atomic.Pointer[error]
	stuck atomic.Int64
	gens  atomic.Int64
}

func (c *walFaults) wrap(w walStore) walStore {
	return &faultyWAL{walStore: w, c: c, gen: c.gens.Add(1)}
}

func (c *walFaults) fail(err error) {
	if err == nil {
		c.err.Store(nil)
		return
	}
	c.err.Store(&err)
}

type faultyWAL struct {
	walStore
	c   *walFaults
	gen int64
}

func (f *faultyWAL) StoreLogs(logs []*raft.Log) error {
	if f.gen <= f.c.stuck.Load() {
		return waltypes.ErrSealed
	}
	if p := f.c.err.Load(); p != nil {
		return *p
	}
	return f.walStore.StoreLogs(logs)
}

// TestJournalWriteFault: while the raft log cannot be written, commits
// answer ErrJournalWrite with the cause (never "not the leader", although
// the single node steps down at every failed write), Health says so, the
// metrics show it; when writes work again, issuance resumes by itself and
// the chain continues.
func TestJournalWriteFault(t *testing.T) {
	faults := &walFaults{}
	n := startNode(t, t.TempDir(), newTestClock(), func(c *Config) { c.wrapWAL = faults.wrap })
	faultClock := newTestClock()
	n.logs.faultMu.Lock()
	n.logs.now = faultClock.Now
	n.logs.faultMu.Unlock()
	if _, err := commitOne(t, n, "a"); err != nil {
		t.Fatal(err)
	}
	enospc := fmt.Errorf("write /data/raft/wal/00001.wal: %w", syscall.ENOSPC)
	faults.fail(enospc)
	want := "ha: journal write failed: write /data/raft/wal/00001.wal: no space left on device"
	check := func(what string, err error) {
		t.Helper()
		if err == nil || !errors.Is(err, ErrJournalWrite) || !errors.Is(err, ErrUnavailable) || !errors.Is(err, syscall.ENOSPC) ||
			errors.Is(err, ErrNotLeader) || !strings.HasSuffix(err.Error(), want) {
			t.Fatalf("%s: %v\nwant ...%s", what, err, want)
		}
	}
	// Commit until the node has been seen without leadership (it steps
	// down at the failed write and retries at each election): every
	// answer names the cause.
	sawFollower, attempts := false, 0
	deadline := time.Now().Add(15 * time.Second)
	for !sawFollower || attempts < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("after %d attempts: follower seen %v", attempts, sawFollower)
		}
		sawFollower = sawFollower || !n.isLeader()
		_, err := commitOne(t, n, "b")
		check(fmt.Sprintf("commit %d", attempts), err)
		attempts++
	}
	check("Health", n.Health())
	if _, err := n.CreateEntry(context.Background(), Entry{Agent: "a", SPIFFEID: "spiffe://x/y"}); err == nil || !errors.Is(err, ErrJournalWrite) {
		t.Fatalf("CreateEntry: %v", err)
	}
	if f, e := metricValue(t, n.m.journalWriteFailing), metricValue(t, n.m.journalWriteErrors); f != 1 || e < 1 {
		t.Fatalf("tier0_journal_write_failing %v, tier0_journal_write_errors_total %v", f, e)
	}

	faults.fail(nil) // space is back
	var r *record.Record
	waitFor(t, "issuance to resume", func() bool {
		var err error
		r, err = commitOne(t, n, "c")
		return err == nil
	})
	// The fault ends once writes have succeeded for the hold time.
	check("Health right after recovery", n.Health())
	faultClock.Add(faultHold)
	if err := n.Health(); err != nil {
		t.Fatalf("Health once writes succeeded for %v: %v", faultHold, err)
	}
	if f := metricValue(t, n.m.journalWriteFailing); f != 0 {
		t.Fatalf("tier0_journal_write_failing = %v after recovery", f)
	}
	if r.Seq != 2 {
		t.Fatalf("first record after recovery has seq %d, want 2 (nothing failed was committed)", r.Seq)
	}
}

// TestJournalReopensStuckWAL: a WAL whose tail stays sealed after a failed
// segment rotation is reopened, and the write retried, by the log store
// itself; if the fresh WAL cannot write either, the answer names its cause.
func TestJournalReopensStuckWAL(t *testing.T) {
	faults := &walFaults{}
	n := startNode(t, t.TempDir(), newTestClock(), func(c *Config) { c.wrapWAL = faults.wrap })
	n.logs.faultMu.Lock()
	n.logs.reopenGap = 0 // this test gets the WAL stuck twice within a second
	n.logs.faultMu.Unlock()
	if _, err := commitOne(t, n, "a"); err != nil {
		t.Fatal(err)
	}
	gen := faults.gens.Load()
	faults.stuck.Store(gen)
	if _, err := commitOne(t, n, "b"); err != nil {
		t.Fatalf("commit on a stuck WAL: %v", err)
	}
	if faults.gens.Load() != gen+1 || n.Health() != nil || metricValue(t, n.m.journalWriteErrors) != 0 {
		t.Fatalf("not reopened transparently: generation %d -> %d, health %v", gen, faults.gens.Load(), n.Health())
	}

	// Stuck again, and the fresh WAL has no space either.
	faults.stuck.Store(faults.gens.Load())
	faults.fail(fmt.Errorf("write /data/raft/wal/00002.wal: %w", syscall.ENOSPC))
	_, err := commitOne(t, n, "c")
	if !errors.Is(err, ErrJournalWrite) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("stuck WAL, no space: %v", err)
	}
	faults.fail(nil)
	waitFor(t, "issuance to resume", func() bool {
		_, err := commitOne(t, n, "d")
		return err == nil
	})
	if js := n.JournalStatus(); js.Seq != 3 {
		t.Fatalf("journal at seq %d, want 3", js.Seq)
	}
}
