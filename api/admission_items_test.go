package api

import (
	"context"
	"testing"
	"time"
)

// TestAdmissionItemBudget: calls run while the items in flight fit the
// budget; a call that does not fit waits for a release, and a call bigger
// than the whole budget still runs alone.
func TestAdmissionItemBudget(t *testing.T) {
	a := newAdmission(4, 10, newMetrics(nil))
	a.maxItems = 10
	ctx := context.Background()
	rel1, _, err := a.acquireN(ctx, 0, 6)
	if err != nil {
		t.Fatal(err)
	}
	rel2, _, err := a.acquireN(ctx, 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	go func() {
		rel, _, err := a.acquireN(ctx, 0, 1)
		if err != nil {
			t.Error(err)
		}
		close(got)
		rel()
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
			t.Fatal("a call over the item budget did not queue")
		}
		time.Sleep(time.Millisecond) // polling the queue length
	}
	rel2()
	<-got
	rel1()
	big, _, err := a.acquireN(ctx, 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	big()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.calls != 0 || a.items != 0 {
		t.Fatalf("after all releases: %d calls, %d items in flight", a.calls, a.items)
	}
}
