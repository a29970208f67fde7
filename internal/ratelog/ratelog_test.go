package ratelog

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestOneLinePerStateChangePlusPeriodicCount(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), time.Minute)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	ctx := context.Background()
	logN := func(n int, state string) {
		for range n {
			l.Log(ctx, slog.LevelWarn, "commit failed", state, "journal commit failed", slog.String("err", state+" detail"))
		}
	}
	lines := func() []string {
		s := strings.TrimSpace(buf.String())
		if s == "" {
			return nil
		}
		return strings.Split(s, "\n")
	}

	logN(10000, "unavailable") // an outage: one line
	if got := lines(); len(got) != 1 || strings.Contains(got[0], "held_back") {
		t.Fatalf("after 10000 identical failures: %q", got)
	}
	now = now.Add(61 * time.Second) // the periodic line carries the count
	logN(1, "unavailable")
	if got := lines(); len(got) != 2 || !strings.Contains(got[1], "held_back=9999") {
		t.Fatalf("periodic line: %q", got)
	}
	logN(5, "unavailable")
	logN(1, "no space") // a state change is never held back
	got := lines()
	if len(got) != 3 || !strings.Contains(got[2], "held_back=5") || !strings.Contains(got[2], "previous_state=unavailable") ||
		!strings.Contains(got[2], "no space detail") {
		t.Fatalf("state change line: %q", got)
	}
	// Keys are independent.
	l.Log(ctx, slog.LevelInfo, "svid denied", "permission denied", "svid denied")
	if got := lines(); len(got) != 4 {
		t.Fatalf("another key was held back: %q", got)
	}
	// A disabled level writes and counts nothing.
	quiet := New(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError})), time.Minute)
	quiet.Log(ctx, slog.LevelInfo, "k", "s", "not written")
	if got := lines(); len(got) != 4 {
		t.Fatalf("a disabled level was written: %q", got)
	}
}
