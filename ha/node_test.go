package ha

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tier0-ca/tier0/ca/record"
)

func TestCommitConcurrentGroupCommit(t *testing.T) {
	clock := newTestClock()
	reg := prometheus.NewRegistry()
	n := startNode(t, t.TempDir(), clock, func(c *Config) { c.Registerer = reg })
	ctx := context.Background()
	before := n.raft.LastIndex()

	const workers, per = 50, 20
	var (
		mu  sync.Mutex
		all []*record.Record
		wg  sync.WaitGroup
	)
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				r := testRecord("w" + string(rune('a'+w%26)))
				if err := n.Commit(ctx, []*record.Record{r}); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				all = append(all, r)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Commit: %v", err)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Seq < all[j].Seq })
	head := verifyChain(t, all, 1, record.Genesis)
	for _, r := range all {
		if !r.CommittedAt.Equal(record.Truncate(clock.Now())) {
			t.Fatalf("seq %d: CommittedAt %v, want leader clock %v", r.Seq, r.CommittedAt, clock.Now())
		}
	}
	js := n.JournalStatus()
	if js.Seq != workers*per || !bytes.Equal(js.Head, head) || js.Unexported != workers*per {
		t.Fatalf("journal status %+v, want seq %d head %x", js, workers*per, head)
	}
	entries := n.raft.LastIndex() - before
	batches := metricValue(t, n.m.journalEntries)
	t.Logf("%d records in %d raft entries (%v batches)", workers*per, entries, batches)
	if entries > workers*per/4 || uint64(batches) != entries {
		t.Fatalf("group commit: %d raft entries (%v batches) for %d records", entries, batches, workers*per)
	}
	if got := metricValue(t, n.m.journalSeq); got != workers*per {
		t.Fatalf("tier0_journal_seq = %v", got)
	}
	// Tail returns the records in order, as copies.
	tail := n.Tail(990, 100)
	if len(tail) != 10 || tail[0].Seq != 991 {
		t.Fatalf("Tail(990): %d records from %d", len(tail), tail[0].Seq)
	}
	tail[0].Hash[0] ^= 0xff
	if n.Tail(990, 1)[0].Hash[0] == tail[0].Hash[0] {
		t.Fatal("Tail returned shared memory")
	}
}

func TestCommitRejectsBadRecords(t *testing.T) {
	n := startNode(t, t.TempDir(), newTestClock())
	ctx := context.Background()
	bad := testRecord("a")
	bad.Serial = ""
	for name, recs := range map[string][]*record.Record{
		"nil record":   {nil},
		"empty serial": {testRecord("a"), bad},
	} {
		if err := n.Commit(ctx, recs); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if err := n.Commit(ctx, nil); err != nil {
		t.Fatalf("empty commit: %v", err)
	}
	if js := n.JournalStatus(); js.Seq != 0 {
		t.Fatalf("seq = %d after rejected commits", js.Seq)
	}
}

// populate writes one of each kind of state and returns the committed records.
func populate(t *testing.T, n *Node, clock *testClock) []*record.Record {
	t.Helper()
	ctx := context.Background()
	for _, e := range []Entry{
		{Agent: "agent-b", SPIFFEID: "spiffe://example.org/db", TTL: time.Hour},
		{Agent: "agent-a", SPIFFEID: "spiffe://example.org/web", TTL: 30 * time.Minute},
		{Agent: "agent-a", SPIFFEID: "spiffe://example.org/api", TTL: 15 * time.Minute},
	} {
		if _, err := n.CreateEntry(ctx, e); err != nil {
			t.Fatalf("CreateEntry: %v", err)
		}
	}
	if err := n.CreateToken(ctx, tokenHash("tok-1"), "agent-c", clock.Now().Add(time.Hour)); err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	if err := n.CreateToken(ctx, tokenHash("tok-2"), "agent-d", clock.Now().Add(time.Hour)); err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	if _, err := n.ConsumeToken(ctx, tokenHash("tok-2")); err != nil {
		t.Fatalf("ConsumeToken: %v", err)
	}
	if err := n.SetBundle(ctx, [][]byte{[]byte("root-1"), []byte("root-2")}, "example.org"); err != nil {
		t.Fatalf("SetBundle: %v", err)
	}
	var recs []*record.Record
	for range 5 {
		batch := []*record.Record{testRecord("a"), testRecord("b")}
		if err := n.Commit(ctx, batch); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		recs = append(recs, batch...)
	}
	return recs
}

type fullState struct {
	entries []Entry
	bundle  Bundle
	journal JournalStatus
	tail    []*record.Record
}

func snapshotOf(n *Node) fullState {
	return fullState{n.ListEntries(""), n.Bundle(), n.JournalStatus(), n.Tail(0, 1<<30)}
}

func checkSame(t *testing.T, got, want fullState) {
	t.Helper()
	if !slices.EqualFunc(got.entries, want.entries, func(a, b Entry) bool {
		return a.ID == b.ID && a.Agent == b.Agent && a.SPIFFEID == b.SPIFFEID && a.TTL == b.TTL && a.CreatedAt.Equal(b.CreatedAt)
	}) {
		t.Errorf("entries:\n got %+v\nwant %+v", got.entries, want.entries)
	}
	if got.bundle.TrustDomain != want.bundle.TrustDomain || got.bundle.Sequence != want.bundle.Sequence ||
		!slices.EqualFunc(got.bundle.Roots, want.bundle.Roots, bytes.Equal) {
		t.Errorf("bundle: got %+v want %+v", got.bundle, want.bundle)
	}
	if got.journal.Seq != want.journal.Seq || !bytes.Equal(got.journal.Head, want.journal.Head) ||
		got.journal.ExportedSeq != want.journal.ExportedSeq || got.journal.Unexported != want.journal.Unexported {
		t.Errorf("journal: got %+v want %+v", got.journal, want.journal)
	}
	if len(got.tail) != len(want.tail) {
		t.Fatalf("tail: %d records, want %d", len(got.tail), len(want.tail))
	}
	for i := range got.tail {
		if !bytes.Equal(got.tail[i].Canonical(), want.tail[i].Canonical()) || !bytes.Equal(got.tail[i].Hash, want.tail[i].Hash) {
			t.Errorf("tail record %d differs", i)
		}
	}
}

func TestRestartAndSnapshotRestore(t *testing.T) {
	for _, snapshot := range []bool{false, true} {
		name := "log-replay"
		if snapshot {
			name = "snapshot"
		}
		t.Run(name, func(t *testing.T) {
			dir, clock := t.TempDir(), newTestClock()
			// TrailingLogs 1: a snapshot compacts the log, so the restart
			// must go through fsm.Restore.
			trailing := func(c *Config) { c.TrailingLogs = 1 }
			n := startNode(t, dir, clock, trailing)
			recs := populate(t, n, clock)
			if snapshot {
				if err := n.raft.Snapshot().Error(); err != nil {
					t.Fatalf("Snapshot: %v", err)
				}
				if n.raft.Stats()["last_snapshot_index"] == "0" {
					t.Fatalf("no snapshot taken: %v", n.raft.Stats())
				}
			}
			want := snapshotOf(n)
			if err := n.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := n.Commit(context.Background(), []*record.Record{testRecord("x")}); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Commit after Close: %v, want ErrUnavailable", err)
			}

			clock.Add(time.Minute)
			n2 := startNode(t, dir, clock, trailing)
			if got := n2.fsm.restores.Load(); got != map[bool]int64{false: 0, true: 1}[snapshot] {
				t.Errorf("fsm restores = %d", got)
			}
			checkSame(t, snapshotOf(n2), want)
			if es := n2.EntriesFor("agent-a"); len(es) != 2 || es[0].SPIFFEID != "spiffe://example.org/api" {
				t.Errorf("EntriesFor(agent-a) = %+v", es)
			}
			ctx := context.Background()
			if agent, err := n2.ConsumeToken(ctx, tokenHash("tok-1")); err != nil || agent != "agent-c" {
				t.Errorf("ConsumeToken(tok-1) after restart = %q, %v", agent, err)
			}
			if _, err := n2.ConsumeToken(ctx, tokenHash("tok-2")); !errors.Is(err, ErrTokenInvalid) {
				t.Errorf("ConsumeToken(used tok-2) after restart: %v", err)
			}
			next := []*record.Record{testRecord("c")}
			if err := n2.Commit(ctx, next); err != nil {
				t.Fatalf("Commit after restart: %v", err)
			}
			tail := n2.Tail(0, 1<<30)
			verifyChain(t, tail, 1, record.Genesis)
			if last := tail[len(tail)-1]; last.Serial != next[0].Serial || len(recs) == 0 {
				t.Fatalf("last record %s, want %s", last.Serial, next[0].Serial)
			}
		})
	}
}

func TestEntries(t *testing.T) {
	n := startNode(t, t.TempDir(), newTestClock())
	ctx := context.Background()
	e, err := n.CreateEntry(ctx, Entry{Agent: "a", SPIFFEID: "spiffe://example.org/x", TTL: time.Hour})
	if err != nil {
		t.Fatalf("CreateEntry: %v", err)
	}
	if len(e.ID) != 16 || e.CreatedAt.IsZero() {
		t.Fatalf("entry = %+v", e)
	}
	if _, err := n.CreateEntry(ctx, Entry{Agent: "a", SPIFFEID: "spiffe://example.org/x"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := n.CreateEntry(ctx, Entry{Agent: "a"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("missing spiffe id: %v", err)
	}
	if _, err := n.CreateEntry(ctx, Entry{Agent: "b", SPIFFEID: "spiffe://example.org/x"}); err != nil {
		t.Fatalf("same id, other agent: %v", err)
	}
	if got := n.ListEntries(""); len(got) != 2 {
		t.Fatalf("ListEntries = %+v", got)
	}
	if err := n.DeleteEntry(ctx, e.ID); err != nil {
		t.Fatalf("DeleteEntry: %v", err)
	}
	if err := n.DeleteEntry(ctx, e.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DeleteEntry twice: %v", err)
	}
	if got := n.EntriesFor("a"); len(got) != 0 {
		t.Fatalf("EntriesFor(a) after delete = %+v", got)
	}
	if got := n.ListEntries("b"); len(got) != 1 {
		t.Fatalf("ListEntries(b) = %+v", got)
	}
}

func TestTokens(t *testing.T) {
	clock := newTestClock()
	n := startNode(t, t.TempDir(), clock)
	ctx := context.Background()
	h := tokenHash("secret")
	if err := n.CreateToken(ctx, h, "agent-1", clock.Now().Add(10*time.Minute)); err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	if err := n.CreateToken(ctx, h, "agent-2", clock.Now().Add(10*time.Minute)); !errors.Is(err, ErrExists) {
		t.Fatalf("CreateToken duplicate: %v", err)
	}
	if err := n.CreateToken(ctx, "not-hex", "agent-2", clock.Now().Add(time.Minute)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("CreateToken bad hash: %v", err)
	}
	agent, err := n.ConsumeToken(ctx, h)
	if err != nil || agent != "agent-1" {
		t.Fatalf("ConsumeToken = %q, %v", agent, err)
	}
	for name, hash := range map[string]string{"used": h, "unknown": tokenHash("other"), "malformed": "zz"} {
		if _, err := n.ConsumeToken(ctx, hash); !errors.Is(err, ErrTokenInvalid) || err.Error() != "ha: consume token: ha: join token invalid" {
			t.Errorf("%s: err = %v", name, err)
		}
	}

	exp := tokenHash("expiring")
	if err := n.CreateToken(ctx, exp, "agent-3", clock.Now().Add(time.Minute)); err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	clock.Add(time.Minute)
	if _, err := n.ConsumeToken(ctx, exp); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("expired: %v", err)
	}
	// Expired tokens (used or not) are purged by the next token command.
	clock.Add(10 * time.Minute)
	if err := n.CreateToken(ctx, tokenHash("new"), "agent-4", clock.Now().Add(time.Minute)); err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	n.fsm.read(func(s *state) {
		if len(s.tokens) != 1 {
			t.Errorf("tokens after purge: %+v", s.tokens)
		}
	})
}

func TestBundle(t *testing.T) {
	n := startNode(t, t.TempDir(), newTestClock())
	ctx := context.Background()
	if b := n.Bundle(); b.Sequence != 0 || len(b.Roots) != 0 {
		t.Fatalf("initial bundle %+v", b)
	}
	roots := [][]byte{[]byte("r1")}
	for i := 1; i <= 2; i++ {
		if err := n.SetBundle(ctx, roots, "example.org"); err != nil {
			t.Fatalf("SetBundle: %v", err)
		}
		if b := n.Bundle(); b.Sequence != uint64(i) || b.TrustDomain != "example.org" || string(b.Roots[0]) != "r1" {
			t.Fatalf("bundle %+v", b)
		}
	}
	roots[0][0] = 'X' // the node keeps its own copy
	if b := n.Bundle(); string(b.Roots[0]) != "r1" {
		t.Fatalf("bundle aliased caller memory: %q", b.Roots[0])
	}
	if err := n.SetBundle(ctx, nil, "example.org"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty roots: %v", err)
	}
}

func TestStatus(t *testing.T) {
	n := startNode(t, t.TempDir(), newTestClock())
	st := n.Status()
	if st.NodeID != "n1" || st.State != "Leader" || st.Leader != "n1" || len(st.Servers) != 1 || st.Servers[0].Suffrage != "Voter" {
		t.Fatalf("status %+v", st)
	}
}

func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatalf("metric: %v", err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	}
	t.Fatalf("metric %v: not a counter or gauge", m.Desc())
	return 0
}
