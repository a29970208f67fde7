package api

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestAdmissionPriority: when the server must choose, the call renewing the
// soonest-to-expire SVID goes first, and new SVIDs (prio 0) go last.
func TestAdmissionPriority(t *testing.T) {
	a := newAdmission(1, 10, newMetrics(nil))
	ctx := context.Background()
	release, _, err := a.acquire(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	order := make(chan int64, 3)
	queued := func() int { a.mu.Lock(); defer a.mu.Unlock(); return len(a.waiters) }
	for i, prio := range []int64{0, 300, 100} {
		go func() {
			rel, _, err := a.acquire(ctx, prio)
			if err != nil {
				t.Error(err)
				return
			}
			order <- prio
			rel()
		}()
		deadline := time.Now().Add(5 * time.Second)
		for queued() != i+1 {
			if time.Now().After(deadline) {
				t.Fatal("waiter never queued")
			}
			time.Sleep(time.Millisecond)
		}
	}
	release()
	for _, want := range []int64{100, 300, 0} {
		if got := <-order; got != want {
			t.Fatalf("served prio %d, want %d", got, want)
		}
	}
}

func TestAdmissionOverload(t *testing.T) {
	a := newAdmission(1, 1, newMetrics(nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rel, _, _ := a.acquire(ctx, 0)
	defer rel()
	waitErr := make(chan error, 1)
	go func() {
		_, _, err := a.acquire(ctx, 0)
		waitErr <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		a.mu.Lock()
		n := len(a.waiters)
		a.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("waiter never queued")
		}
		time.Sleep(time.Millisecond)
	}
	_, hint, err := a.acquire(ctx, 0)
	if !errors.Is(err, errOverloaded) || hint < 50*time.Millisecond || hint > 5*time.Second {
		t.Fatalf("full queue: err %v hint %v, want errOverloaded with a hint in [50ms, 5s]", err, hint)
	}
	cancel() // the queued waiter leaves cleanly
	if err := <-waitErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v", err)
	}
}
