package journal

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/hatest"
	"github.com/tier0-ca/tier0/internal/testenv"
	"github.com/tier0-ca/tier0/storage"
)

var recs = hatest.Records

func waitFull(t *testing.T, b *Bounded, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.Full() != want {
		if time.Now().After(deadline) {
			t.Fatalf("Full() stayed %v", !want)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

// TestFailClosed: with no exporter running the backlog reaches the limit;
// Commit then refuses with ha.ErrUnavailable (api: Unavailable) and ErrFull,
// writes nothing, and issues again once an exporter drains the backlog.
func TestFailClosed(t *testing.T) {
	node := hatest.Node(t)
	logs := &testenv.Buffer{}
	b, err := New(Config{Node: node, MaxUnexported: 3, FailClosed: true, Interval: 5 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil)), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	if err := b.Commit(ctx, recs(3)); err != nil {
		t.Fatal(err)
	}
	waitFull(t, b, true)
	err = b.Commit(ctx, recs(1))
	if !errors.Is(err, ha.ErrUnavailable) || !errors.Is(err, ErrFull) ||
		!strings.Contains(err.Error(), "more than 3 issued records wait for export to the record store (is it down?); refusing to issue because --on-journal-full=fail-closed") {
		t.Fatalf("Commit while full: %v", err)
	}
	if seq := node.JournalStatus().Seq; seq != 3 {
		t.Fatalf("journal at seq %d after a refused commit, want 3", seq)
	}
	if err := b.Ready(); !errors.Is(err, ErrFull) {
		t.Fatalf("Ready while full: %v", err)
	}
	// check() sets the full flag before it writes the log line: poll.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "JOURNAL FULL") || !strings.Contains(logs.String(), "mint refused (Unavailable)"); {
		if time.Now().After(deadline) {
			t.Fatalf("log: %s", logs)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}

	s, err := storage.OpenAudit(ctx, "sqlite:"+filepath.Join(t.TempDir(), "records.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ectx, stopExport := context.WithCancel(ctx)
	exported := make(chan error, 1)
	go func() { exported <- node.RunExporter(ectx, s) }()
	waitFull(t, b, false)
	if err := b.Commit(ctx, recs(1)); err != nil {
		t.Fatalf("Commit after the export caught up: %v", err)
	}
	stopExport()
	<-exported
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestKeepIssuing: the same backlog under keep-issuing only alerts.
func TestKeepIssuing(t *testing.T) {
	node := hatest.Node(t)
	logs := &testenv.Buffer{}
	reg := prometheus.NewRegistry()
	b, err := New(Config{Node: node, MaxUnexported: 2, Interval: 5 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil)), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = b.Run(ctx) }()
	if err := b.Commit(ctx, recs(2)); err != nil {
		t.Fatal(err)
	}
	waitFull(t, b, true)
	if err := b.Commit(ctx, recs(5)); err != nil {
		t.Fatalf("keep-issuing refused: %v", err)
	}
	if seq := node.JournalStatus().Seq; seq != 7 {
		t.Fatalf("journal at seq %d, want 7", seq)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "still issuing; raft state and snapshots grow"); {
		if time.Now().After(deadline) {
			t.Fatalf("log: %s", logs)
		}
		time.Sleep(5 * time.Millisecond) // polling interval: check() logs after setting the flag
	}
	mfs, _ := reg.Gather()
	got := map[string]float64{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
	}
	if got["tier0_journal_full"] != 1 || got["tier0_journal_unexported_limit"] != 2 {
		t.Fatalf("metrics %v", got)
	}
}

func TestNoLimit(t *testing.T) {
	if _, err := New(Config{Node: hatest.Node(t), MaxUnexported: -1}); err == nil ||
		err.Error() != "--max-unexported -1: must be 0 (no limit) or positive" {
		t.Fatalf("negative limit: %v", err)
	}
	b, err := New(Config{Node: hatest.Node(t), FailClosed: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(context.Background(), recs(10)); err != nil {
		t.Fatal(err)
	}
	b.check()
	if b.Full() {
		t.Fatal("full with no limit")
	}
}
