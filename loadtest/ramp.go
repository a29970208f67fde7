package loadtest

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/tier0-ca/tier0/internal/backoff"
)

// RampStep is one rate step of a ramp.
type RampStep struct {
	OfferedPerSec float64 `json:"offered_per_sec"` // SVIDs/s sent
	GoodputPerSec float64 `json:"goodput_per_sec"` // SVIDs/s issued (by completion time)
	P50Ms         float64 `json:"p50_ms"`
	P99Ms         float64 `json:"p99_ms"`
	ErrorRate     float64 `json:"error_rate"` // refused or failed attempts / attempts
	Pass          bool    `json:"pass"`
}

// RampResult reports the knee (the highest rate that kept p99 and errors
// under their limits) and, when asked, goodput under overload.
type RampResult struct {
	Steps         []RampStep `json:"steps"`
	KneePerSec    float64    `json:"knee_per_sec"`
	PeakGoodput   float64    `json:"peak_goodput_per_sec"`
	Overload      float64    `json:"overload_factor,omitempty"`
	OverloadRate  float64    `json:"overload_offered_per_sec,omitempty"`
	OverloadGood  float64    `json:"overload_goodput_per_sec,omitempty"`
	OverloadRatio float64    `json:"overload_goodput_ratio,omitempty"` // overload goodput / peak
	OverloadP99Ms float64    `json:"overload_p99_ms,omitempty"`
}

// ramp raises an open-loop rate step by step until p99 latency or the error
// rate passes its limit, or goodput falls below 90% of the offered rate,
// then optionally offers Overload times the peak goodput for a while.
type ramp struct {
	fleet          *Fleet
	send           *sender
	batch          int
	startRate      float64 // SVIDs/s
	stepRate       float64
	stepDur        time.Duration
	maxSteps       int
	p99Limit       time.Duration
	errLimit       float64
	overload       float64
	overloadDur    time.Duration
	maxOutstanding int64
	notAfterIn     time.Duration // renewing_not_after offset sent with each item

	mu     sync.Mutex
	agent  int
	cursor []int
}

func (r *ramp) run(ctx context.Context) RampResult {
	var out RampResult
	r.cursor = make([]int, len(r.fleet.Agents))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	rec := r.send.rec
	at := time.Since(rec.start)
	for k := 0; k < r.maxSteps; k++ {
		rate := r.startRate + float64(k)*r.stepRate
		refused := refusedTotal(rec)
		r.pace(ctx, &wg, rate, at, at+r.stepDur)
		w := summarise(rec.snapshot(), at, at+r.stepDur)
		at += r.stepDur
		st := RampStep{OfferedPerSec: rate, GoodputPerSec: float64(w.issued) / r.stepDur.Seconds(),
			P50Ms: ms(w.p50), P99Ms: ms(w.p99)}
		if att := w.attempts + refusedTotal(rec) - refused; att > 0 {
			st.ErrorRate = float64(refusedTotal(rec)-refused+w.failed) / float64(att)
		}
		st.Pass = w.p99 <= r.p99Limit && st.ErrorRate <= r.errLimit && st.GoodputPerSec >= 0.9*rate
		out.Steps = append(out.Steps, st)
		out.PeakGoodput = max(out.PeakGoodput, st.GoodputPerSec)
		if !st.Pass || ctx.Err() != nil {
			break
		}
		out.KneePerSec = rate
	}
	if r.overload <= 0 || ctx.Err() != nil {
		return out
	}
	// Let the backlog of the failed step clear before measuring overload.
	for deadline := time.Now().Add(r.send.deadline); rec.inflight.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond) // polling the generator's own counter
	}
	out.Overload = r.overload
	out.OverloadRate = r.overload * out.PeakGoodput
	at = time.Since(rec.start)
	r.pace(ctx, &wg, out.OverloadRate, at, at+r.overloadDur)
	// Skip the first second: the server's queue fills then.
	warm := min(time.Second, r.overloadDur/4)
	w := summarise(rec.snapshot(), at+warm, at+r.overloadDur)
	out.OverloadGood = float64(w.issued) / (r.overloadDur - warm).Seconds()
	out.OverloadP99Ms = ms(w.p99)
	if out.PeakGoodput > 0 {
		out.OverloadRatio = out.OverloadGood / out.PeakGoodput
	}
	return out
}

// pace sends calls of r.batch SVIDs at rate SVIDs/s from offset from to
// offset to, each at its scheduled time whether or not earlier calls have
// returned; it returns at offset to.
func (r *ramp) pace(ctx context.Context, wg *sync.WaitGroup, rate float64, from, to time.Duration) {
	rec := r.send.rec
	interval := time.Duration(float64(time.Second) * float64(r.batch) / rate)
	for t := from; t < to; t += interval {
		if d := time.Until(rec.start.Add(t)); d > 0 {
			if backoff.Sleep(ctx, d) != nil {
				return
			}
		}
		if rec.inflight.Load() >= r.maxOutstanding {
			rec.finish(sample{intended: t, done: time.Since(rec.start), failed: int32(r.batch)},
				map[string]int{"client_overflow": r.batch}, nil)
			continue
		}
		c := r.next(rec.start.Add(t))
		wg.Add(1)
		go func() { defer wg.Done(); r.send.do(ctx, c) }()
	}
	if d := time.Until(rec.start.Add(to)); d > 0 {
		_ = backoff.Sleep(ctx, d)
	}
}

// next picks the next agent (round robin) and its next r.batch workloads.
func (r *ramp) next(intended time.Time) *call {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.fleet.Agents[r.agent]
	ai := r.agent
	r.agent = (r.agent + 1) % len(r.fleet.Agents)
	c := &call{agent: a, intended: intended}
	na := intended.Add(backoff.Jitter(r.notAfterIn, 0.1)).Unix()
	for range min(r.batch, a.NumWorkloads()) {
		c.items = append(c.items, r.cursor[ai])
		c.notAfter = append(c.notAfter, na+rand.Int64N(2))
		r.cursor[ai] = (r.cursor[ai] + 1) % a.NumWorkloads()
	}
	return c
}

func refusedTotal(r *Recorder) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, v := range r.attempts {
		n += v
	}
	return n
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
