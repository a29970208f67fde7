package ha

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tier0-ca/tier0/ca/record"
)

// sliceSink is an in-memory record store. It fails the first failAppends
// Append calls (after storing half the batch, like a connection lost
// mid-COPY without a transaction would not; Append must be idempotent).
type sliceSink struct {
	mu          sync.Mutex
	recs        []*record.Record
	failAppends int
	appends     int
	lineage     *record.Lineage
}

func (s *sliceSink) LastSeq(context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last(), nil
}

func (s *sliceSink) last() uint64 {
	switch {
	case len(s.recs) > 0:
		return s.recs[len(s.recs)-1].Seq
	case s.lineage != nil:
		return s.lineage.BaseSeq
	}
	return 0
}

func (s *sliceSink) Range(_ context.Context, from, to uint64, fn func(*record.Record) error) error {
	for _, r := range s.snapshot() {
		if r.Seq >= from && (to == 0 || r.Seq <= to) {
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *sliceSink) Lineage(context.Context) (record.Lineage, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lineage == nil {
		return record.Lineage{}, false, nil
	}
	return *s.lineage, true, nil
}

func (s *sliceSink) ClaimLineage(_ context.Context, l record.Lineage, _ string, _ time.Time) (record.Lineage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lineage == nil {
		s.lineage = &l
	}
	return *s.lineage, nil
}

func (s *sliceSink) Append(_ context.Context, recs []*record.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appends++
	for i, r := range recs {
		if s.failAppends > 0 && i == len(recs)/2 {
			s.failAppends--
			return errors.New("store down")
		}
		last := s.last()
		if r.Seq <= last {
			continue // idempotent by seq
		}
		if r.Seq != last+1 {
			return fmt.Errorf("gap: got seq %d after %d", r.Seq, last)
		}
		s.recs = append(s.recs, r)
	}
	return nil
}

func (s *sliceSink) snapshot() []*record.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*record.Record(nil), s.recs...)
}

func TestExporter(t *testing.T) {
	reg, dir, clock := prometheus.NewRegistry(), t.TempDir(), newTestClock()
	n := startNode(t, dir, clock, func(c *Config) { c.Registerer = reg; c.TrailingLogs = 1 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	commit := func(k int) {
		for range k {
			if err := n.Commit(ctx, []*record.Record{testRecord("e")}); err != nil {
				t.Fatalf("Commit: %v", err)
			}
		}
	}
	commit(20) // before the exporter starts

	sink := &sliceSink{failAppends: 3}
	done := make(chan error, 1)
	go func() { done <- n.RunExporter(ctx, sink) }()

	commit(30) // while it runs (and fails)
	waitFor(t, "export of 50 records", func() bool { return n.JournalStatus().ExportedSeq == 50 })
	got := sink.snapshot()
	verifyChain(t, got, 1, record.Genesis)
	if len(got) != 50 {
		t.Fatalf("sink has %d records", len(got))
	}
	if js := n.JournalStatus(); js.Unexported != 0 || len(n.Tail(0, 100)) != 0 {
		t.Fatalf("after export: %+v, tail %d", js, len(n.Tail(0, 100)))
	}
	if e := metricValue(t, n.m.exportErrors); e != 3 {
		t.Errorf("tier0_export_errors_total = %v, want 3", e)
	}
	if lag := metricValue(t, n.m.exportLag); lag != 0 {
		t.Errorf("tier0_export_lag_records = %v", lag)
	}
	if x := metricValue(t, n.m.exportedRecords); x != 50 {
		t.Errorf("tier0_exported_records_total = %v", x)
	}

	// New commits keep flowing, and the exported seq survives a restart
	// through a snapshot.
	commit(5)
	waitFor(t, "export of 55 records", func() bool { return n.JournalStatus().ExportedSeq == 55 })
	if err := n.raft.Snapshot().Error(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunExporter returned %v", err)
	}
	verifyChain(t, sink.snapshot(), 1, record.Genesis)
	if x := metricValue(t, n.m.exportedRecords); x != 55 {
		t.Errorf("tier0_exported_records_total = %v, want 55", x)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n2 := startNode(t, dir, clock, func(c *Config) { c.TrailingLogs = 1 })
	if js := n2.JournalStatus(); js.Seq != 55 || js.ExportedSeq != 55 || js.Unexported != 0 || n2.fsm.restores.Load() != 1 {
		t.Fatalf("after restart: %+v (restores %d)", js, n2.fsm.restores.Load())
	}
}

// A store that already has records the journal still holds (appended, then
// the node crashed before "exported" committed) is caught up, not duplicated.
func TestExporterResumesFromStore(t *testing.T) {
	n := startNode(t, t.TempDir(), newTestClock())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 10 {
		if err := n.Commit(ctx, []*record.Record{testRecord("r")}); err != nil {
			t.Fatal(err)
		}
	}
	sink := &sliceSink{recs: n.Tail(0, 4)}
	done := make(chan error, 1)
	go func() { done <- n.RunExporter(ctx, sink) }()
	waitFor(t, "export", func() bool { return n.JournalStatus().ExportedSeq == 10 })
	verifyChain(t, sink.snapshot(), 1, record.Genesis)
	if got := len(sink.snapshot()); got != 10 {
		t.Fatalf("sink has %d records", got)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunExporter did not return")
	}
}
