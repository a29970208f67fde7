package loadtest

import (
	"container/heap"
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/tier0-ca/tier0/internal/backoff"
)

// renewal simulates the fleet's agents renewing their workloads' SVIDs:
// each agent wakes on its own sync tick (a random phase, every Sync), and
// renews every SVID then due in one MintX509SVIDs call (split at MaxBatch).
// Ticks are scheduled in advance and sent at their time whether or not
// earlier calls have returned (open loop); latency counts from the tick.
//
// In steady mode an SVID is due at half its lifetime +-10% after it was
// issued, and the run lasts Duration. In storm mode every SVID is due at
// once (within Spread) and the run ends when each has been renewed once.
type renewal struct {
	fleet    *Fleet
	send     *sender
	storm    bool
	ttl      time.Duration // SVID lifetime in run (compressed) time
	sync     time.Duration // agent tick in run time
	maxBatch int
	duration time.Duration // steady: how long; storm: give up after
	spread   time.Duration // storm: agents start within this window

	start  time.Time
	agents map[*Agent]*agentState
}

type agentState struct {
	a        *Agent
	phase    time.Duration
	due      []time.Duration // per workload, offset from start
	inflight []bool
	renewed  []bool // storm: renewed once
	calls    int    // calls in flight
	next     time.Duration
	index    int // in the tick heap, -1 when not queued
}

func (r *renewal) run(ctx context.Context) {
	r.start = r.send.rec.start
	left := 0 // storm: SVIDs not yet renewed
	h := &tickHeap{}
	r.agents = make(map[*Agent]*agentState, len(r.fleet.Agents))
	for _, a := range r.fleet.Agents {
		s := &agentState{a: a, phase: time.Duration(rand.Int64N(int64(r.sync))), index: -1,
			due: make([]time.Duration, a.NumWorkloads()), inflight: make([]bool, a.NumWorkloads()),
			renewed: make([]bool, a.NumWorkloads())}
		start := time.Duration(0)
		if r.spread > 0 {
			start = time.Duration(rand.Int64N(int64(r.spread)))
		}
		if r.storm {
			s.phase = start
		}
		for i := range s.due {
			if r.storm {
				s.due[i] = start
			} else {
				// In the steady state the fleet's SVIDs are of every age.
				s.due[i] = time.Duration(rand.Int64N(int64(r.ttl / 2)))
			}
		}
		left += len(s.due)
		r.agents[a] = s
		r.reschedule(h, s, 0)
	}

	done := make(chan result, 1024)
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	end := r.duration
	outstanding := 0
	for {
		now := time.Since(r.start)
		if (r.storm && left == 0) || now >= end {
			break
		}
		for h.Len() > 0 && (*h)[0].next <= now {
			s := heap.Pop(h).(*agentState)
			outstanding += r.tick(ctx, s, done, &wg)
			r.reschedule(h, s, now)
		}
		wait := end - now
		if h.Len() > 0 {
			wait = min(wait, (*h)[0].next-now)
		}
		timer.Reset(max(wait, 0))
		select {
		case res := <-done:
			outstanding--
			left -= r.complete(h, res)
		case <-timer.C:
		case <-ctx.Done():
			return
		}
	}
	// Stop ticking; let the calls in flight finish (they end by their deadline).
	for outstanding > 0 {
		<-done
		outstanding--
	}
}

// tick sends the agent's due SVIDs, at most maxBatch per call.
func (r *renewal) tick(ctx context.Context, s *agentState, done chan<- result, wg *sync.WaitGroup) int {
	if r.storm && s.calls > 0 {
		// In a storm an agent has one call in flight at a time, as an
		// agent renewing a backlog does: the tester then holds one
		// encoded request per agent, not its whole backlog (at a million
		// workloads, gigabytes of requests queued in gRPC's buffers).
		return 0
	}
	var items []int
	var notAfter []int64
	calls := 0
	flush := func() {
		c := &call{agent: s.a, items: items, notAfter: notAfter, intended: r.start.Add(s.next)}
		wg.Add(1)
		go func() { defer wg.Done(); done <- r.send.do(ctx, c) }()
		calls++
		s.calls++
		items, notAfter = nil, nil
	}
	for i, d := range s.due {
		if s.inflight[i] || d > s.next || (r.storm && s.renewed[i]) {
			continue
		}
		s.inflight[i] = true
		items = append(items, i)
		// The SVID being renewed expires half a lifetime after it was due.
		notAfter = append(notAfter, r.start.Add(d+r.ttl/2).Unix())
		if len(items) == r.maxBatch {
			flush()
			if r.storm {
				break
			}
		}
	}
	if len(items) > 0 {
		flush()
	}
	return calls
}

// complete applies a call's results: a renewed SVID is next due at half
// its lifetime +-10%; a failed one at the agent's next tick.
func (r *renewal) complete(h *tickHeap, res result) int {
	s := r.agents[res.call.agent]
	s.calls--
	renewed := 0
	at := res.done.Sub(r.start)
	for j, i := range res.call.items {
		s.inflight[i] = false
		if !res.ok[j] {
			s.due[i] = at
			continue
		}
		s.due[i] = at + backoff.Jitter(r.ttl/2, 0.1)
		if !s.renewed[i] {
			s.renewed[i] = true
			renewed++
		}
	}
	if s.index >= 0 {
		heap.Remove(h, s.index)
	}
	r.reschedule(h, s, at)
	if r.storm {
		return renewed
	}
	return 0
}

// reschedule queues the agent at its first tick at or after its soonest
// due SVID that is not in flight (not at all when none is pending).
func (r *renewal) reschedule(h *tickHeap, s *agentState, now time.Duration) {
	first := time.Duration(-1)
	for i, d := range s.due {
		if s.inflight[i] || (r.storm && s.renewed[i]) {
			continue
		}
		if first < 0 || d < first {
			first = d
		}
	}
	if first < 0 {
		return
	}
	first = max(first, now)
	// Round up to the agent's tick grid.
	k := (first - s.phase + r.sync - 1) / r.sync
	s.next = s.phase + max(k, 0)*r.sync
	if s.next < now {
		s.next += r.sync
	}
	heap.Push(h, s)
}

type tickHeap []*agentState

func (h tickHeap) Len() int           { return len(h) }
func (h tickHeap) Less(i, j int) bool { return h[i].next < h[j].next }
func (h tickHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *tickHeap) Push(x any)        { s := x.(*agentState); s.index = len(*h); *h = append(*h, s) }
func (h *tickHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	*h = old[:len(old)-1]
	s.index = -1
	return s
}
