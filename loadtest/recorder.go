package loadtest

import (
	"math"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// sample is one finished call. Latency runs from the call's intended send
// time (not the actual one), so a slow server cannot hide queueing delay in
// the generator: coordinated omission is avoided.
type sample struct {
	intended time.Duration // offset from the run start
	done     time.Duration // offset from the run start
	ok       int32         // SVIDs issued by this call
	failed   int32         // items that failed for good
	attempts int32
}

func (s sample) latency() time.Duration { return s.done - s.intended }

// Recorder collects call outcomes. It is safe for concurrent use; the
// counters are atomics so a progress bar can read them while a run goes on.
type Recorder struct {
	start time.Time

	issued   atomic.Int64 // SVIDs
	failed   atomic.Int64 // items failed for good
	calls    atomic.Int64
	inflight atomic.Int64
	retries  atomic.Int64 // attempts refused and retried

	mu        sync.Mutex
	samples   []sample
	attempts  map[string]int64 // refused attempts by kind (retried or not)
	failures  map[string]int64 // items failed for good, by kind
	serials   []string
	verified  int64
	badVerify int64
	verifyMsg []string
}

// NewRecorder starts the clock.
func NewRecorder(start time.Time) *Recorder {
	return &Recorder{start: start, attempts: map[string]int64{}, failures: map[string]int64{}}
}

// Start is the run's time zero.
func (r *Recorder) Start() time.Time { return r.start }

func (r *Recorder) attemptFailed(kind string) {
	r.mu.Lock()
	r.attempts[kind]++
	r.mu.Unlock()
}

func (r *Recorder) finish(s sample, failKinds map[string]int, serials []string) {
	r.issued.Add(int64(s.ok))
	r.failed.Add(int64(s.failed))
	r.calls.Add(1)
	r.mu.Lock()
	r.samples = append(r.samples, s)
	for k, n := range failKinds {
		r.failures[k] += int64(n)
	}
	r.serials = append(r.serials, serials...)
	r.mu.Unlock()
}

func (r *Recorder) verifyResult(err error) {
	r.mu.Lock()
	r.verified++
	if err != nil {
		r.badVerify++
		if len(r.verifyMsg) < 10 {
			r.verifyMsg = append(r.verifyMsg, err.Error())
		}
	}
	r.mu.Unlock()
}

// Serials returns the serials (lowercase hex) of the SVIDs issued, when the
// run collected them.
func (r *Recorder) Serials() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.serials)
}

// snapshot copies the samples finished so far.
func (r *Recorder) snapshot() []sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.samples)
}

// window summarises the samples that finished in [from, to).
type window struct {
	issued, failed int64
	attempts       int64
	p50, p99       time.Duration
}

func summarise(samples []sample, from, to time.Duration) window {
	var w window
	var lat []weighted
	for _, s := range samples {
		if s.done < from || s.done >= to {
			continue
		}
		w.issued += int64(s.ok)
		w.failed += int64(s.failed)
		w.attempts += int64(s.attempts)
		if n := s.ok + s.failed; n > 0 {
			lat = append(lat, weighted{s.latency(), int64(n)})
		}
	}
	w.p50 = percentile(lat, 0.50)
	w.p99 = percentile(lat, 0.99)
	return w
}

// weighted is a latency shared by n SVIDs (one batch call).
type weighted struct {
	d time.Duration
	n int64
}

// percentile of SVID latencies; sorts lat.
func percentile(lat []weighted, q float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i].d < lat[j].d })
	var total int64
	for _, l := range lat {
		total += l.n
	}
	rank := int64(math.Ceil(q * float64(total)))
	var acc int64
	for _, l := range lat {
		acc += l.n
		if acc >= rank {
			return l.d
		}
	}
	return lat[len(lat)-1].d
}
