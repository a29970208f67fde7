package server

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tier0-ca/tier0/internal/testenv"
)

// TestWaitUntil: it returns once the condition holds, with the
// condition's error, or when ctx ends; it names what it waits for in the
// phase and the log while it waits (and not at all when nothing is
// missing).
func TestWaitUntil(t *testing.T) {
	logs := &testenv.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	var phase atomic.Pointer[string]
	setPhase := func(p string) { phase.Store(&p) }
	none := func() []any { return nil }

	if err := waitUntil(context.Background(), log, setPhase, "join: x", func() (bool, error) { return true, nil }, none); err != nil || phase.Load() != nil || logs.String() != "" {
		t.Fatalf("nothing to wait for: %v, phase %v, log %q", err, phase.Load(), logs.String())
	}
	var n atomic.Int32
	if err := waitUntil(context.Background(), log, setPhase, "join: waiting for y", func() (bool, error) { return n.Add(1) > 3, nil }, none); err != nil {
		t.Fatal(err)
	}
	if *phase.Load() != "join: waiting for y" || !strings.Contains(logs.String(), `msg="cluster: join: waiting for y"`) || !strings.Contains(logs.String(), "cluster: join: waiting for y: done") {
		t.Fatalf("phase %q, log %s", *phase.Load(), logs.String())
	}
	boom := errors.New("boom")
	n.Store(0)
	if err := waitUntil(context.Background(), log, setPhase, "z", func() (bool, error) {
		if n.Add(1) > 2 {
			return false, boom
		}
		return false, nil
	}, none); !errors.Is(err, boom) {
		t.Fatalf("condition error: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := waitUntil(ctx, log, setPhase, "w", func() (bool, error) { return false, nil }, none); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}
