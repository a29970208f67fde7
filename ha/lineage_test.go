package ha

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tier0-ca/tier0/ca/record"
)

func commitN(t *testing.T, n *Node, k int) []*record.Record {
	t.Helper()
	var out []*record.Record
	for range k {
		r := testRecord("l")
		if err := n.Commit(context.Background(), []*record.Record{r}); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		out = append(out, r)
	}
	return out
}

// runExporter runs RunExporter until the test ends and returns its result channel.
func runExporter(t *testing.T, n *Node, sink Sink) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done, finished := make(chan error, 1), make(chan struct{})
	go func() { defer close(finished); done <- n.RunExporter(ctx, sink) }()
	t.Cleanup(func() { cancel(); <-finished })
	return done
}

func waitRefused(t *testing.T, n *Node, done <-chan error) error {
	t.Helper()
	var err error
	select {
	case err = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the exporter did not refuse the store")
	}
	if !errors.Is(err, ErrStoreMismatch) || !errors.Is(n.ExportHealth(), ErrStoreMismatch) {
		t.Fatalf("RunExporter = %v, ExportHealth = %v; want ErrStoreMismatch", err, n.ExportHealth())
	}
	return err
}

// A first start: the exporter sets the journal's lineage through raft,
// claims the empty store with it and exports; with ExportCheck, a commit
// waits for that check.
func TestLineageFirstStart(t *testing.T) {
	n := startNode(t, t.TempDir(), newTestClock(), func(c *Config) { c.ExportCheck = true })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := n.Commit(ctx, []*record.Record{testRecord("x")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Commit before the store check = %v, want it to wait for the check", err)
	}
	if js := n.JournalStatus(); js.Seq != 0 {
		t.Fatalf("a commit went through before the store check: %+v", js)
	}
	sink := &sliceSink{}
	runExporter(t, n, sink)
	commitN(t, n, 3)
	waitFor(t, "export", func() bool { return n.JournalStatus().ExportedSeq == 3 })
	jl, ok := n.Lineage()
	if !ok || jl.BaseSeq != 0 || !bytes.Equal(jl.BaseHash, record.Genesis) || jl.Parent != "" {
		t.Fatalf("journal lineage %+v, %v", jl, ok)
	}
	sl, ok, _ := sink.Lineage(context.Background())
	if !ok || !sl.Same(jl) {
		t.Fatalf("store lineage %s, journal %s", sl, jl)
	}
	if n.ExportHealth() != nil {
		t.Fatalf("ExportHealth = %v", n.ExportHealth())
	}
}

// A store claimed by another cluster is refused: for good (a later restart
// of the exporter, or the journal passing the store's seq, changes
// nothing), loudly (health, metric, the message names both lineages) and
// issuance stops; nothing is exported to it.
func TestLineageRefusesOtherCluster(t *testing.T) {
	reg := prometheus.NewRegistry()
	n := startNode(t, t.TempDir(), newTestClock(), func(c *Config) { c.ExportCheck = true; c.Registerer = reg })
	other := &sliceSink{}
	on := startNode(t, t.TempDir(), newTestClock())
	runExporter(t, on, other)
	commitN(t, on, 5)
	waitFor(t, "other export", func() bool { return on.JournalStatus().ExportedSeq == 5 })
	ol, _ := on.Lineage()

	if v := metricValue(t, n.m.exportRefused); v != 0 {
		t.Fatalf("tier0_export_refused = %v before any check", v)
	}
	err := waitRefused(t, n, runExporter(t, n, other))
	jl, _ := n.Lineage() // set at the first start, before the store was read
	for _, want := range []string{ol.ClusterID, ol.ID, jl.ClusterID, jl.ID, "another CA or cluster"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not name %q", err, want)
		}
	}
	if v := metricValue(t, n.m.exportRefused); v != 1 {
		t.Errorf("tier0_export_refused = %v, want 1", v)
	}
	cerr := n.Commit(context.Background(), []*record.Record{testRecord("x")})
	if !errors.Is(cerr, ErrUnavailable) || !strings.Contains(cerr.Error(), ol.ID) {
		t.Fatalf("Commit after the refusal = %v, want Unavailable naming the store's lineage", cerr)
	}
	if len(other.snapshot()) != 5 || n.JournalStatus().Seq != 0 || jl.ID == "" {
		t.Fatalf("store has %d records, journal %+v, lineage %+v", len(other.snapshot()), n.JournalStatus(), jl)
	}
	// Permanent: a new exporter on the same node refuses too, at once.
	if err := n.RunExporter(context.Background(), &sliceSink{}); !errors.Is(err, ErrStoreMismatch) {
		t.Fatalf("a second RunExporter = %v", err)
	}
}

// An unclaimed store from an older tier0 (no lineages), holding another
// chain: refused whether it is ahead of the journal or forked below its
// head; the refusal stays when the journal passes the store's seq (the old
// exporter then appended and forked the store).
func TestLineageRefusesForeignChain(t *testing.T) {
	foreign := &sliceSink{}
	prev := record.Genesis
	for i := range 8 {
		r := testRecord("foreign")
		r.Seq, r.CommittedAt = uint64(i+1), time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		prev = r.Seal(prev)
		foreign.recs = append(foreign.recs, r)
	}
	t.Run("ahead", func(t *testing.T) {
		n := startNode(t, t.TempDir(), newTestClock())
		commitN(t, n, 3)
		err := waitRefused(t, n, runExporter(t, n, &sliceSink{recs: foreign.snapshot()}))
		if !strings.Contains(err.Error(), "ends at seq 8, beyond this journal's last seq 3") {
			t.Fatalf("refusal %q", err)
		}
		if cerr := n.Commit(context.Background(), []*record.Record{testRecord("x")}); !errors.Is(cerr, ErrUnavailable) {
			t.Fatalf("Commit after the refusal = %v", cerr)
		}
	})
	t.Run("forked", func(t *testing.T) {
		n := startNode(t, t.TempDir(), newTestClock())
		commitN(t, n, 12)
		sink := &sliceSink{recs: foreign.snapshot()}
		err := waitRefused(t, n, runExporter(t, n, sink))
		if !strings.Contains(err.Error(), "the chains forked") {
			t.Fatalf("refusal %q", err)
		}
		if len(sink.snapshot()) != 8 || sink.lineage != nil {
			t.Fatalf("the refused store was written: %d records, lineage %v", len(sink.snapshot()), sink.lineage)
		}
	})
}

// Upgrade: a journal and a store from before lineages that chain together
// are adopted (the journal gets a new lineage, the store is claimed with
// it); a journal without a lineage takes the lineage of a claimed store
// whose chain it continues (a snapshot from a node that predates lineages).
func TestLineageUpgradeAdoption(t *testing.T) {
	n := startNode(t, t.TempDir(), newTestClock())
	recs := commitN(t, n, 10)
	sink := &sliceSink{recs: recs[:4]}
	runExporter(t, n, sink)
	waitFor(t, "export", func() bool { return n.JournalStatus().ExportedSeq == 10 })
	jl, ok := n.Lineage()
	sl, sok, _ := sink.Lineage(context.Background())
	if !ok || !sok || !sl.Same(jl) {
		t.Fatalf("journal lineage %s (%v), store %s (%v)", jl, ok, sl, sok)
	}
	verifyChain(t, sink.snapshot(), 1, record.Genesis)

	m := startNode(t, t.TempDir(), newTestClock())
	mrecs := commitN(t, m, 6)
	claimed := &sliceSink{recs: mrecs[:6], lineage: &record.Lineage{ClusterID: "c1", ID: "l1", BaseHash: record.Genesis, CreatedAt: time.Unix(1, 0).UTC()}}
	runExporter(t, m, claimed)
	waitFor(t, "export", func() bool { return m.JournalStatus().ExportedSeq == 6 })
	if ml, ok := m.Lineage(); !ok || ml.ClusterID != "c1" || ml.ID != "l1" {
		t.Fatalf("journal lineage %+v, %v; want the store's", ml, ok)
	}
}

// A store that lacks records this journal exported (another, empty store;
// or one restored from an older database backup) is refused.
func TestLineageRefusesStoreBehind(t *testing.T) {
	n := startNode(t, t.TempDir(), newTestClock())
	commitN(t, n, 5)
	first := &sliceSink{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.RunExporter(ctx, first) }()
	waitFor(t, "export", func() bool { return n.JournalStatus().ExportedSeq == 5 })
	cancel()
	<-done
	for name, sink := range map[string]*sliceSink{
		"empty":  {},
		"behind": {recs: first.snapshot()[:3], lineage: first.lineage},
	} {
		t.Run(name, func(t *testing.T) {
			err := waitRefused(t, n, runExporter(t, n, sink))
			if !strings.Contains(err.Error(), "already exported records up to seq 5") {
				t.Fatalf("refusal %q", err)
			}
		})
	}
}

// Two clusters racing to claim one empty store: exactly one exports to it.
func TestLineageClaimRace(t *testing.T) {
	sink := &sliceSink{}
	a := startNode(t, t.TempDir(), newTestClock())
	b := startNode(t, t.TempDir(), newTestClock())
	runExporter(t, a, sink)
	runExporter(t, b, sink)
	waitFor(t, "one refusal", func() bool { return a.ExportHealth() != nil || b.ExportHealth() != nil })
	sl, _, _ := sink.Lineage(context.Background())
	la, _ := a.Lineage()
	lb, _ := b.Lineage()
	if (a.ExportHealth() == nil) == (b.ExportHealth() == nil) || !(sl.Same(la) || sl.Same(lb)) {
		t.Fatalf("health a %v, b %v; store %s, a %s, b %s", a.ExportHealth(), b.ExportHealth(), sl, la, lb)
	}
}

// A store that cannot be read does not hold issuance (records wait in the
// journal, --store-optional); once it can be read and turns out to be
// another cluster's, it is refused.
func TestLineageStoreDownThenForeign(t *testing.T) {
	n := startNode(t, t.TempDir(), newTestClock(), func(c *Config) { c.ExportCheck = true })
	sink := &flakySink{}
	sink.down.Store(true)
	done := runExporter(t, n, sink)
	commitN(t, n, 2) // passes: the check could not read the store
	sink.lineage = &record.Lineage{ClusterID: "other", ID: "l", BaseHash: record.Genesis, CreatedAt: time.Unix(1, 0).UTC()}
	sink.down.Store(false)
	waitRefused(t, n, done)
	if js := n.JournalStatus(); js.Unexported != 2 || js.ExportedSeq != 0 {
		t.Fatalf("journal %+v: the records issued while the store was down must stay in the journal", js)
	}
}

type flakySink struct {
	sliceSink
	down atomic.Bool
}

var errDown = errors.New("store down")

func (s *flakySink) Lineage(ctx context.Context) (record.Lineage, bool, error) {
	if s.down.Load() {
		return record.Lineage{}, false, errDown
	}
	return s.sliceSink.Lineage(ctx)
}

// The lineage command: set once, the same again is a no-op, another is
// ErrExists, a malformed one ErrInvalid; it survives a snapshot restore.
func TestLineageCommand(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, newTestClock(), func(c *Config) { c.TrailingLogs = 1 })
	ctx := context.Background()
	l := record.Lineage{ClusterID: "c", ID: "l", BaseHash: record.Genesis, CreatedAt: time.Unix(5, 0).UTC()}
	if _, err := n.proposeLineage(ctx, l); err != nil {
		t.Fatal(err)
	}
	if _, err := n.proposeLineage(ctx, l); err != nil {
		t.Fatalf("the same lineage again: %v", err)
	}
	other := l
	other.ID = "l2"
	data, _ := encodeCommand(cmdLineage, lineageCmd{Lineage: other})
	if _, err := n.applyLocal(ctx, "t", data); !errors.Is(err, ErrExists) {
		t.Fatalf("another lineage = %v, want ErrExists", err)
	}
	for _, bad := range []record.Lineage{
		{ClusterID: "c", ID: "", BaseHash: record.Genesis},
		{ClusterID: "c", ID: "x", BaseSeq: 99, BaseHash: record.Genesis},
		{ClusterID: "c", ID: "x", BaseHash: bytes.Repeat([]byte{1}, 32)},
	} {
		data, _ := encodeCommand(cmdLineage, lineageCmd{Lineage: bad})
		if _, err := n.applyLocal(ctx, "t", data); !errors.Is(err, ErrInvalid) {
			t.Errorf("lineage %+v = %v, want ErrInvalid", bad, err)
		}
	}
	commitN(t, n, 3)
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	n.Close()
	n2 := startNode(t, dir, newTestClock())
	if got, ok := n2.Lineage(); !ok || !got.Same(l) || !got.CreatedAt.Equal(l.CreatedAt) || n2.fsm.restores.Load() != 1 {
		t.Fatalf("after a snapshot restore: %+v, %v", got, ok)
	}
}

// A backup restored as a new lineage (tier0 backup restore without --store)
// starts after the backup's exported seq: an empty new store is claimed
// from there and takes the unexported tail; the old store refuses it.
func TestLineageRestoredStartsNew(t *testing.T) {
	ctx := context.Background()
	src := startNode(t, t.TempDir(), newTestClock())
	old := &sliceSink{}
	stop := runExporterUntil(t, src, old)
	commitN(t, src, 4)
	waitFor(t, "export", func() bool { return src.JournalStatus().ExportedSeq == 4 })
	stop()
	commitN(t, src, 3) // 5..7 unexported in the backup
	meta, rc, err := src.Backup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := io.ReadAll(rc)
	rc.Close()
	var out bytes.Buffer
	at := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	info, err := RewriteSnapshot(bytes.NewReader(payload), &out, nil, NewLineage(at))
	if err != nil {
		t.Fatal(err)
	}
	sl, _ := src.Lineage()
	nl := info.Lineage
	if nl == nil || nl.ClusterID != sl.ClusterID || nl.ID == sl.ID || nl.Parent != sl.ID || nl.BaseSeq != 4 || !nl.CreatedAt.Equal(at) {
		t.Fatalf("new lineage %+v (source %s)", nl, sl)
	}
	if _, err := InspectSnapshot(bytes.NewReader(out.Bytes())); err != nil {
		t.Fatalf("rewritten snapshot: %v", err)
	}
	meta.Size = int64(out.Len())

	restore := func() *Node {
		n := startNode(t, t.TempDir(), newTestClock())
		if err := n.RestoreBackup(ctx, meta, bytes.NewReader(out.Bytes())); err != nil {
			t.Fatal(err)
		}
		return n
	}
	r1 := restore()
	err = waitRefused(t, r1, runExporter(t, r1, old))
	for _, want := range []string{sl.ID, nl.ID, "tier0 backup restore --store", "new, empty store"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not name %q", err, want)
		}
	}
	r2 := restore()
	fresh := &sliceSink{}
	runExporter(t, r2, fresh)
	commitN(t, r2, 2)
	waitFor(t, "export to the new store", func() bool { return r2.JournalStatus().ExportedSeq == 9 })
	got := fresh.snapshot()
	if fl, _, _ := fresh.Lineage(ctx); !fl.Same(*nl) || len(got) != 5 || got[0].Seq != 5 {
		t.Fatalf("new store: lineage %s, %d records from %d", fl, len(got), got[0].Seq)
	}
	verifyChain(t, got, 5, nl.BaseHash)
}

// runExporterUntil runs an exporter and returns a function that stops it.
func runExporterUntil(t *testing.T, n *Node, sink Sink) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.RunExporter(ctx, sink) }()
	var once atomic.Bool
	stop := func() {
		if once.CompareAndSwap(false, true) {
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

// A leader whose store is refused hands leadership to a voter whose store
// continues the journal: issuance goes on there, the refused node stays
// refused.
func TestLineageRefusedLeaderStepsDown(t *testing.T) {
	nodes := startCluster(t, 3, newTestClock())
	n1 := leaderOf(t, nodes)
	good := &sliceSink{}
	foreign := &sliceSink{lineage: &record.Lineage{ClusterID: "other", ID: "l", BaseHash: record.Genesis, CreatedAt: time.Unix(1, 0).UTC()}}
	for _, n := range nodes {
		sink := good
		if n == n1 {
			sink = foreign
		}
		runExporter(t, n, sink)
	}
	waitFor(t, "the refused leader to step down", func() bool { return n1.ExportHealth() != nil && !n1.isLeader() })
	leader := leaderOf(t, nodes)
	if leader == n1 {
		t.Fatal("the refused node leads again")
	}
	if err := leader.Commit(context.Background(), []*record.Record{testRecord("x")}); err != nil {
		t.Fatalf("Commit on the new leader: %v", err)
	}
	waitFor(t, "export to the good store", func() bool { return len(good.snapshot()) == 1 })
	if err := n1.Commit(context.Background(), []*record.Record{testRecord("x")}); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "REFUSED") {
		t.Fatalf("Commit on the refused node = %v", err)
	}
	if foreign.last() != 0 || len(foreign.snapshot()) != 0 {
		t.Fatal("the foreign store was written")
	}
}
