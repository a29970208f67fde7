package api

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// TestAdmissionQueueBoundedInItems: the queue refuses a call whose items
// would pass maxQueueItems, however few calls wait; an empty queue takes
// any call.
func TestAdmissionQueueBoundedInItems(t *testing.T) {
	a := newAdmission(1, 100, newMetrics(nil))
	a.maxItems, a.maxQueueItems = 10, 10
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rel, _, err := a.acquireN(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer rel()
	queued := make(chan error, 1)
	go func() { _, _, err := a.acquireN(ctx, 0, 8); queued <- err }() // waits: the budget is in use
	waitFor(t, func() bool { a.mu.Lock(); defer a.mu.Unlock(); return a.queuedItems == 8 })
	if _, hint, err := a.acquireN(ctx, 0, 3); !errors.Is(err, errOverloaded) || hint <= 0 {
		t.Fatalf("8 items queued, 3 more of at most 10: err %v hint %v, want errOverloaded with a hint", err, hint)
	}
	cancel()
	if err := <-queued; !errors.Is(err, context.Canceled) {
		t.Fatalf("queued call after cancel: %v", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.queuedItems != 0 || len(a.waiters) != 0 {
		t.Fatalf("after the waiter left: %d items, %d waiters queued", a.queuedItems, len(a.waiters))
	}
}

// TestAdmissionTapSlots: a tapped call holds a slot until admission counts
// it, its stream ends, or tapHold passes; the tap refuses beyond maxTapped
// and when the queue is full.
func TestAdmissionTapSlots(t *testing.T) {
	a := newAdmission(1, 1, newMetrics(nil))
	a.maxTapped = 2
	now := time.Now()
	ctx1, end1 := context.WithCancel(context.Background())
	t1, _, ok1 := a.tap(ctx1, now)
	t2, _, ok2 := a.tap(context.Background(), now)
	if !ok1 || !ok2 {
		t.Fatal("tap refused with free slots")
	}
	if _, hint, ok := a.tap(context.Background(), now); ok || hint <= 0 {
		t.Fatalf("third tap with maxTapped 2: ok %v hint %v, want refused with a hint", ok, hint)
	}
	// Reaching admission ends the tap slot.
	rel, _, err := a.acquireN(context.WithValue(context.Background(), tapKey{}, t2), 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer rel()
	// The stream's end ends the other.
	end1()
	waitFor(t, func() bool { a.mu.Lock(); defer a.mu.Unlock(); return a.tapped == 0 })
	if t1.el != nil {
		t.Fatal("ticket still listed after its stream ended")
	}
	// A tapped call whose message never comes stops counting after tapHold.
	if _, _, ok := a.tap(context.Background(), now); !ok {
		t.Fatal("tap refused with free slots")
	}
	if _, _, ok := a.tap(context.Background(), now); !ok {
		t.Fatal("tap refused with free slots")
	}
	if _, _, ok := a.tap(context.Background(), now.Add(tapHold+time.Millisecond)); !ok {
		t.Fatal("tap refused although the slots' holders passed tapHold")
	}
	// A full queue refuses at the tap.
	go func() { _, _, _ = a.acquireN(context.Background(), 0, 1) }() // queues behind rel
	waitFor(t, func() bool { a.mu.Lock(); defer a.mu.Unlock(); return len(a.waiters) == 1 })
	a.mu.Lock()
	a.tapped, a.maxTapped = 0, 10
	a.tapList.Init()
	a.mu.Unlock()
	if _, _, ok := a.tap(context.Background(), now.Add(time.Hour)); ok {
		t.Fatal("tap let a call through with the queue full")
	}
}

// TestMintRefusedBeforeRead: with the admission queue full, a mint call is
// refused by the tap before its message is read — a batch over MaxBatch,
// which the handler would answer InvalidArgument, gets ResourceExhausted —
// and the retry hint comes as RetryInfo, which client.RetryHint reads.
func TestMintRefusedBeforeRead(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxBatch = 2 })
	agentID := spiffeid.RequireFromString("spiffe://example.org/tier0/agent/a1")
	c := f.clientAs(t, agentID)
	a := f.srv.adm
	a.mu.Lock()
	a.maxQueueItems = 0 // every tap refused: the queue "holds" its bound
	a.mu.Unlock()
	req := &tier0v1.MintX509SVIDsRequest{Items: make([]*tier0v1.MintItem, 5)}
	for i := range req.Items {
		req.Items[i] = &tier0v1.MintItem{Csr: []byte("not read")}
	}
	var md metadata.MD
	_, err := tier0v1.NewAgentClient(c).MintX509SVIDs(context.Background(), req, grpc.Trailer(&md))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("mint with the queue full: %v, want ResourceExhausted from the tap", err)
	}
	if d, ok := client.RetryHint(err, md); !ok || d < 50*time.Millisecond || d > 5*time.Second {
		t.Fatalf("retry hint %v %v, want RetryInfo in [50ms, 5s]", d, ok)
	}
	if _, ok := client.RetryAfter(md); ok {
		t.Fatal("a tap refusal has no trailer; the hint must come from RetryInfo")
	}
	// With room again, the same call reaches the handler.
	a.mu.Lock()
	a.maxQueueItems = 1 << 20
	a.mu.Unlock()
	_, err = tier0v1.NewAgentClient(c).MintX509SVIDs(context.Background(), req)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("mint of 5 items, MaxBatch 2: %v, want InvalidArgument from the handler", err)
	}
	// The handler refused before admission: the stream's end frees the slot.
	waitFor(t, func() bool { a.mu.Lock(); defer a.mu.Unlock(); return a.tapped == 0 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond) // polling state another goroutine changes
	}
}

// TestRetryHintGrowsWhileNothingFinishes: before any call has finished
// (the start of a storm) the hint is not the stale 5ms estimate's 50ms
// floor but grows with the time since a call last finished.
func TestRetryHintGrowsWhileNothingFinishes(t *testing.T) {
	a := newAdmission(1, 1, newMetrics(nil))
	rel, _, err := a.acquire(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rel()
	a.mu.Lock()
	fresh := a.retryAfterLocked()
	a.lastDone = a.lastDone.Add(-2 * time.Second) // the running call started 2s ago
	stalled := a.retryAfterLocked()
	a.mu.Unlock()
	if fresh > 100*time.Millisecond || stalled < 2*time.Second {
		t.Fatalf("hint with a call just started %v (want ~50ms), with it running 2s %v (want >= 2s)", fresh, stalled)
	}
}
