package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSleepStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep with a cancelled context = %v", err)
	}
	if err := Sleep(context.Background(), 0); err != nil {
		t.Fatalf("Sleep(0) = %v", err)
	}
}

func TestScaleBounds(t *testing.T) {
	for _, c := range []struct {
		u    float64
		want time.Duration
	}{{0, 80 * time.Millisecond}, {0.5, 100 * time.Millisecond}, {0.999999, 120 * time.Millisecond}} {
		if got := Scale(100*time.Millisecond, 0.2, c.u); got < c.want-time.Microsecond || got > c.want {
			t.Errorf("Scale(100ms, 0.2, %v) = %v, want %v", c.u, got, c.want)
		}
	}
	for range 1000 {
		if d := Jitter(time.Second, 0.1); d < 900*time.Millisecond || d >= 1100*time.Millisecond {
			t.Fatalf("Jitter(1s, 0.1) = %v", d)
		}
	}
}
