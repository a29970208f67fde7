package api

import (
	"container/heap"
	"container/list"
	"context"
	"math"
	"runtime"
	"sync"
	"time"
)

// admission bounds the mint work in flight. A call runs when fewer than
// maxInFlight calls run and the items (SVIDs) in flight stay within
// maxItems (a call always runs when nothing else does); up to maxQueue more
// wait, ordered so that the call renewing the soonest-to-expire SVID goes
// first; beyond that a call is refused at once with ResourceExhausted and a
// retry-after hint, so a renewal storm queues in the agents (with jitter)
// rather than piling up in the server.
//
// Why two bounds (docs/BENCHMARKS.md): a call holds its slot while
// it waits for the journal's fsync, using no CPU, and concurrent calls share
// one Raft entry (group commit). Small calls therefore need many slots (16 per
// core: +28% throughput at batch size 1 over 4 per core), while big batches
// are CPU-bound and a few of them fill the cores: the item budget (512 per
// core) keeps them from crowding the queue out of its priority order, at
// the same batch throughput as before.
type admission struct {
	mu       sync.Mutex
	calls    int // in flight
	items    int // in flight
	slots    int // maxInFlight
	maxItems int
	maxQueue int
	waiters  waitHeap
	seq      uint64
	m        *metrics

	// The queue is bounded in items (SVIDs) as well as calls: what a
	// queued call holds in memory is its items' CSRs. queuedItems are the
	// items of the waiters; calls admitted by the gRPC tap (tap.go) and
	// not yet queued or running are tapped, at most maxTapped.
	queuedItems   int
	maxQueueItems int
	tapped        int
	maxTapped     int
	tapList       list.List // of *tapTicket, oldest first

	// ewma of service time per call, for the retry-after hint, and when a
	// call last finished (or the busy period began): while none finishes
	// the estimate grows with the wait (retryAfterLocked)
	avg      time.Duration
	lastDone time.Time
}

type waiter struct {
	prio  int64 // unix seconds of the soonest NotAfter being renewed; MaxInt64 for new SVIDs
	seq   uint64
	items int
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
func (h waitHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *waitHeap) Push(x any)   { w := x.(*waiter); w.index = len(*h); *h = append(*h, w) }
func (h *waitHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	*h = old[:len(old)-1]
	w.index = -1
	return w
}

func newAdmission(maxInFlight, maxQueue int, m *metrics) *admission {
	if maxInFlight <= 0 {
		maxInFlight = 16 * runtime.GOMAXPROCS(0)
	}
	if maxQueue <= 0 {
		maxQueue = 1024
	}
	maxItems := 512 * runtime.GOMAXPROCS(0)
	return &admission{slots: maxInFlight, maxItems: maxItems, maxQueue: maxQueue, m: m, avg: 5 * time.Millisecond,
		maxQueueItems: 4 * maxItems, maxTapped: 4 * maxInFlight}
}

// queueFullLocked reports whether a call of n items must be refused
// rather than queued: the queue holds maxQueue calls, or its items and
// these n would pass maxQueueItems (a call always queues into an empty
// queue, however big).
func (a *admission) queueFullLocked(n int) bool {
	return len(a.waiters) >= a.maxQueue || (len(a.waiters) > 0 && a.queuedItems+n > a.maxQueueItems)
}

// acquire waits for a slot for a call of one item; see acquireN.
func (a *admission) acquire(ctx context.Context, prio int64) (func(), time.Duration, error) {
	return a.acquireN(ctx, prio, 1)
}

// fitsLocked reports whether a call of n items may start now.
func (a *admission) fitsLocked(n int) bool {
	return a.calls == 0 || (a.calls < a.slots && a.items+n <= a.maxItems)
}

// acquireN waits for a slot for a call of n items. prio is the unix time
// of the soonest NotAfter the call renews (0 = none). It returns a release
// func, or errOverloaded with a retry-after hint when the queue is full.
func (a *admission) acquireN(ctx context.Context, prio int64, n int) (func(), time.Duration, error) {
	if prio <= 0 {
		prio = math.MaxInt64
	}
	n = max(n, 1)
	a.mu.Lock()
	// The call is counted in the queue or in flight from here on, no
	// longer as tapped (tap.go).
	if t := tapFrom(ctx); t != nil {
		a.untapLocked(t)
	}
	if len(a.waiters) == 0 && a.fitsLocked(n) {
		if a.calls == 0 {
			a.lastDone = time.Now()
		}
		a.calls++
		a.items += n
		a.mu.Unlock()
		return a.releaser(n), 0, nil
	}
	if a.queueFullLocked(n) {
		hint := a.retryAfterLocked()
		a.mu.Unlock()
		a.m.overloaded.Inc()
		return nil, hint, errOverloaded
	}
	a.seq++
	w := &waiter{prio: prio, seq: a.seq, items: n, ready: make(chan struct{})}
	heap.Push(&a.waiters, w)
	a.queuedItems += n
	a.m.queue.Set(float64(len(a.waiters)))
	a.mu.Unlock()

	select {
	case <-w.ready:
		return a.releaser(n), 0, nil
	case <-ctx.Done():
		a.mu.Lock()
		if w.index >= 0 {
			heap.Remove(&a.waiters, w.index)
			a.queuedItems -= n
			a.m.queue.Set(float64(len(a.waiters)))
			a.mu.Unlock()
			return nil, 0, ctx.Err()
		}
		a.mu.Unlock()
		// We were handed a slot just as ctx ended: give it back.
		a.releaser(n)()
		return nil, 0, ctx.Err()
	}
}

func (a *admission) releaser(n int) func() {
	start := time.Now()
	var once sync.Once
	return func() {
		once.Do(func() {
			now := time.Now()
			d := now.Sub(start)
			a.mu.Lock()
			a.avg = (a.avg*7 + d) / 8
			a.lastDone = now
			a.calls--
			a.items -= n
			// Admit from the head of the queue while the head fits: strict
			// priority order, so a big batch is never overtaken for ever.
			for len(a.waiters) > 0 && a.fitsLocked(a.waiters[0].items) {
				w := heap.Pop(&a.waiters).(*waiter)
				a.queuedItems -= w.items
				a.calls++
				a.items += w.items
				close(w.ready)
			}
			a.m.queue.Set(float64(len(a.waiters)))
			a.mu.Unlock()
		})
	}
}

// retryAfterLocked estimates when a queue slot frees: the queue's drain time
// (the queued calls and this one) at the recent service time per call and
// the calls now running (fewer than the slots when big batches fill the
// item budget), bounded to [50ms, 5s]. While no call has finished for
// longer than that service time (the first calls of a storm, a stalled
// journal) the time since one did stands in for it: a hint from a stale,
// small estimate would bring every refused agent back at once, each
// resending its whole request, and keep the server busy reading them.
func (a *admission) retryAfterLocked() time.Duration {
	avg := a.avg
	if a.calls > 0 {
		avg = max(avg, time.Since(a.lastDone))
	}
	d := avg * time.Duration(len(a.waiters)+1) / time.Duration(max(a.calls, 1))
	return min(max(d, 50*time.Millisecond), 5*time.Second)
}
