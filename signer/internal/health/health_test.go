package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tier0-ca/tier0/internal/testenv"
	"github.com/tier0-ca/tier0/signer/internal/errs"
)

// lines returns the log lines written to b.
func lines(b *testenv.Buffer) []string {
	return strings.Split(strings.TrimSpace(b.String()), "\n")
}

func poll(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
}

var errDown = errors.New("device gone")

func TestBreakerOpensProbesAndRecovers(t *testing.T) {
	var (
		healthy atomic.Bool
		probes  atomic.Int64
	)
	logs := &testenv.Buffer{}
	m := NewMetrics(prometheus.NewRegistry())
	b := New(Config{
		Backend: "pkcs11", Key: "k", Threshold: 3, ProbeMin: time.Millisecond, ProbeMax: 4 * time.Millisecond,
		Report: time.Hour, Metrics: m, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Probe: func(context.Context) error {
			probes.Add(1)
			if healthy.Load() {
				return nil
			}
			return errDown
		},
	})
	defer b.Stop()
	if h := b.Health(); h.State != Up || value(m.Up.WithLabelValues("pkcs11", "k")) != 1 {
		t.Fatalf("new breaker: %+v", h)
	}
	b.Failure(errs.ReasonUnavailable, errDown)
	b.Failure(errs.ReasonUnavailable, errDown)
	if h := b.Health(); h.State != Degraded || h.Failures != 2 || !errors.Is(h.LastError, errDown) {
		t.Fatalf("after 2 failures: %+v, want degraded", h)
	}
	if err := b.Allow(); err != nil {
		t.Fatalf("Allow below the threshold: %v", err)
	}
	b.Success()
	if h := b.Health(); h.State != Up {
		t.Fatalf("after a success: %+v, want up", h)
	}
	for range 3 {
		b.Failure(errs.ReasonUnavailable, errDown)
	}
	h := b.Health()
	if h.State != Down || h.RetryAt.IsZero() || !errors.Is(h.LastError, errDown) {
		t.Fatalf("after 3 consecutive failures: %+v, want down", h)
	}
	err := b.Allow()
	var ue *errs.UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, errs.ErrUnavailable) || !errors.Is(err, errDown) ||
		ue.Reason != errs.ReasonCircuitOpen || ue.RetryAfter <= 0 || ue.RetryAfter > 4*time.Millisecond {
		t.Fatalf("Allow while open = %#v", err)
	}
	if ue.Public() != "signer: CA key unavailable (pkcs11: circuit_open); retry in "+ue.RetryAfter.Round(time.Millisecond).String() {
		t.Fatalf("Public() = %q", ue.Public())
	}
	if value(m.CircuitOpen.WithLabelValues("pkcs11", "k")) != 1 || value(m.Up.WithLabelValues("pkcs11", "k")) != 0 {
		t.Fatal("gauges do not show the open breaker")
	}
	// Calls admitted before the breaker opened do not close it.
	b.Success()
	if b.Health().State != Down {
		t.Fatal("a late success closed the breaker")
	}
	poll(t, 5*time.Second, func() bool { return probes.Load() >= 3 })
	for range 1000 {
		if b.Allow() == nil {
			t.Fatal("open breaker let a call through")
		}
	}
	healthy.Store(true)
	poll(t, 5*time.Second, func() bool { return b.Allow() == nil })
	if h := b.Health(); h.State != Up || h.LastError != nil {
		t.Fatalf("after recovery: %+v", h)
	}
	if value(m.CircuitOpen.WithLabelValues("pkcs11", "k")) != 0 || value(m.Up.WithLabelValues("pkcs11", "k")) != 1 {
		t.Fatal("gauges do not show the closed breaker")
	}
	lines := lines(logs)
	var refused int
	if len(lines) == 2 {
		if _, after, ok := strings.Cut(lines[1], "refused_calls="); ok {
			_, _ = fmt.Sscanf(after, "%d", &refused)
		}
	}
	if len(lines) != 2 || !strings.Contains(lines[0], "CA key unavailable") || !strings.Contains(lines[0], "err=\"device gone\"") ||
		!strings.Contains(lines[1], "CA key available again") || refused < 1001 {
		t.Fatalf("logs: want one line on open (with the cause) and one on close (with the count):\n%s", strings.Join(lines, "\n"))
	}
}

func TestBreakerReportsWhileDown(t *testing.T) {
	logs := &testenv.Buffer{}
	b := New(Config{
		Backend: "awskms", Key: "k", Threshold: 1, ProbeMin: time.Millisecond, ProbeMax: time.Millisecond,
		Report: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Probe: func(context.Context) error { return errDown },
	})
	b.Failure(errs.ReasonUnavailable, errDown)
	poll(t, 5*time.Second, func() bool { return len(lines(logs)) >= 3 })
	b.Stop()
	got := lines(logs)
	for _, l := range got[1:] {
		if !strings.Contains(l, "CA key still unavailable") || !strings.Contains(l, "failed_probes=") {
			t.Fatalf("periodic line: %s", l)
		}
	}
}

func TestThrottledDegradesAndLogsOnce(t *testing.T) {
	logs := &testenv.Buffer{}
	b := New(Config{Backend: "gcpkms", Key: "k", Report: time.Hour, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Probe: func(context.Context) error { return nil }})
	defer b.Stop()
	for range 100 {
		err := b.Throttled(errs.ErrThrottled, 400*time.Millisecond)
		var ue *errs.UnavailableError
		if !errors.As(err, &ue) || ue.Reason != errs.ReasonThrottled || ue.RetryAfter != 400*time.Millisecond || !errors.Is(err, errs.ErrThrottled) {
			t.Fatalf("Throttled = %#v", err)
		}
	}
	if h := b.Health(); h.State != Degraded {
		t.Fatalf("health while throttled: %+v", h)
	}
	if err := b.Allow(); err != nil {
		t.Fatalf("throttling opened the breaker: %v", err)
	}
	if lines := lines(logs); len(lines) != 1 || !strings.Contains(lines[0], "KMS throttling") {
		t.Fatalf("100 throttled calls logged:\n%s", strings.Join(lines, "\n"))
	}
}

func value(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		panic(err)
	}
	return m.GetGauge().GetValue()
}
