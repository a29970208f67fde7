package api

import (
	"container/heap"
	"context"
	"math"
	"runtime"
	"sync"
	"time"
)

// admission bounds the mint work in flight. Up to maxInFlight calls run at
// once; up to maxQueue more wait, ordered so that the call renewing the
// soonest-to-expire SVID goes first; beyond that a call is refused at once
// with ResourceExhausted and a retry-after hint, so a renewal storm queues
// in the agents (with jitter) rather than piling up in the server.
type admission struct {
	mu       sync.Mutex
	free     int
	slots    int
	maxQueue int
	waiters  waitHeap
	seq      uint64
	m        *metrics

	// ewma of service time per call, for the retry-after hint
	avg time.Duration
}

type waiter struct {
	prio  int64 // unix seconds of the soonest NotAfter being renewed; MaxInt64 for new SVIDs
	seq   uint64
	ready chan struct{}
	index int
}

type waitHeap []*waiter

func (h waitHeap) Len() int { return len(h) }
func (h waitHeap) Less(i, j int) bool {
	if h[i].prio != h[j].prio {
		return h[i].prio < h[j].prio
	}
	return h[i].seq < h[j].seq
}
func (h waitHeap) Swap(i, j int)  { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *waitHeap) Push(x any)    { w := x.(*waiter); w.index = len(*h); *h = append(*h, w) }
func (h *waitHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	*h = old[:len(old)-1]
	w.index = -1
	return w
}

func newAdmission(maxInFlight, maxQueue int, m *metrics) *admission {
	if maxInFlight <= 0 {
		maxInFlight = 4 * runtime.GOMAXPROCS(0)
	}
	if maxQueue <= 0 {
		maxQueue = 1024
	}
	return &admission{free: maxInFlight, slots: maxInFlight, maxQueue: maxQueue, m: m, avg: 5 * time.Millisecond}
}

// acquire waits for a slot. prio is the unix time of the soonest NotAfter
// the call renews (0 = none). It returns a release func, or errOverloaded
// with a retry-after hint when the queue is full.
func (a *admission) acquire(ctx context.Context, prio int64) (func(), time.Duration, error) {
	if prio <= 0 {
		prio = math.MaxInt64
	}
	a.mu.Lock()
	if a.free > 0 && len(a.waiters) == 0 {
		a.free--
		a.mu.Unlock()
		return a.releaser(), 0, nil
	}
	if len(a.waiters) >= a.maxQueue {
		hint := a.retryAfterLocked()
		a.mu.Unlock()
		a.m.overloaded.Inc()
		return nil, hint, errOverloaded
	}
	a.seq++
	w := &waiter{prio: prio, seq: a.seq, ready: make(chan struct{})}
	heap.Push(&a.waiters, w)
	a.m.queue.Set(float64(len(a.waiters)))
	a.mu.Unlock()

	select {
	case <-w.ready:
		return a.releaser(), 0, nil
	case <-ctx.Done():
		a.mu.Lock()
		if w.index >= 0 {
			heap.Remove(&a.waiters, w.index)
			a.m.queue.Set(float64(len(a.waiters)))
			a.mu.Unlock()
			return nil, 0, ctx.Err()
		}
		a.mu.Unlock()
		// We were handed a slot just as ctx ended: give it back.
		a.releaser()()
		return nil, 0, ctx.Err()
	}
}

func (a *admission) releaser() func() {
	start := time.Now()
	var once sync.Once
	return func() {
		once.Do(func() {
			d := time.Since(start)
			a.mu.Lock()
			a.avg = (a.avg*7 + d) / 8
			if len(a.waiters) > 0 {
				w := heap.Pop(&a.waiters).(*waiter)
				a.m.queue.Set(float64(len(a.waiters)))
				close(w.ready) // hand our slot over
			} else {
				a.free++
			}
			a.mu.Unlock()
		})
	}
}

// retryAfterLocked estimates when a queue slot frees: the queue's drain time
// at the recent service rate, bounded to [50ms, 5s].
func (a *admission) retryAfterLocked() time.Duration {
	d := a.avg * time.Duration(len(a.waiters)) / time.Duration(a.slots)
	return min(max(d, 50*time.Millisecond), 5*time.Second)
}
