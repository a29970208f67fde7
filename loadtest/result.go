package loadtest

import (
	"maps"
	"math"
	"sort"
	"time"
)

// Result is what a run measured; it is written as JSON and drawn as HTML.
type Result struct {
	Scenario    string    `json:"scenario"`
	Started     time.Time `json:"started"`
	Agents      int       `json:"agents"`
	Workloads   int       `json:"workloads_per_agent"`
	Compression float64   `json:"compression,omitempty"`
	DurationSec float64   `json:"duration_sec"`

	Issued        int64   `json:"svids_issued"`
	Failed        int64   `json:"svids_failed"`
	Calls         int64   `json:"calls"`
	Retries       int64   `json:"retries"`
	ThroughputSec float64 `json:"throughput_per_sec"` // issued / duration
	Latency       Latency `json:"latency_ms"`

	// ErrorsByKind counts SVIDs that failed for good; RefusedByKind counts
	// attempts refused (and retried when the kind allows).
	ErrorsByKind  map[string]int64 `json:"errors_by_kind"`
	RefusedByKind map[string]int64 `json:"refused_attempts_by_kind"`

	Verified       int64    `json:"verified"`
	VerifyFailures int64    `json:"verify_failures"`
	VerifyErrors   []string `json:"verify_errors,omitempty"`

	// Storm: from the storm's start to the last SVID renewed.
	DrainSec float64 `json:"drain_sec,omitempty"`
	// Failover: the longest time without a successful issuance, and when it began.
	MaxGapSec      float64 `json:"max_gap_sec,omitempty"`
	MaxGapStartSec float64 `json:"max_gap_start_sec,omitempty"`

	Ramp   *RampResult   `json:"ramp,omitempty"`
	Events []EventResult `json:"events,omitempty"`

	// Serials of the SVIDs issued, when Config.CollectSerials.
	Serials []string `json:"-"`

	Timeline  []Bucket  `json:"timeline"`
	Histogram []HistBin `json:"histogram"`
}

// Latency percentiles of SVIDs, in milliseconds, from the intended send time.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// Bucket is one interval of the timeline (by completion time).
type Bucket struct {
	AtSec     float64 `json:"at_sec"`
	IssuedSec float64 `json:"issued_per_sec"`
	FailedSec float64 `json:"failed_per_sec"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
}

// HistBin counts SVIDs whose latency is in [LoMs, HiMs).
type HistBin struct {
	LoMs  float64 `json:"lo_ms"`
	HiMs  float64 `json:"hi_ms"`
	Count int64   `json:"count"`
}

func buildResult(cfg Config, rec *Recorder, end time.Time) *Result {
	samples := rec.snapshot()
	res := &Result{
		Scenario: cfg.Scenario, Started: rec.start, Agents: len(cfg.Fleet.Agents),
		DurationSec: end.Sub(rec.start).Seconds(),
		Issued:      rec.issued.Load(), Failed: rec.failed.Load(), Calls: rec.calls.Load(), Retries: rec.retries.Load(),
	}
	if len(cfg.Fleet.Agents) > 0 {
		res.Workloads = cfg.Fleet.Agents[0].NumWorkloads()
	}
	if cfg.Scenario == Steady || cfg.Scenario == Failover {
		res.Compression = cfg.Compression
	}
	rec.mu.Lock()
	res.ErrorsByKind = maps.Clone(rec.failures)
	res.RefusedByKind = maps.Clone(rec.attempts)
	res.Verified, res.VerifyFailures, res.VerifyErrors = rec.verified, rec.badVerify, append([]string(nil), rec.verifyMsg...)
	rec.mu.Unlock()
	if res.DurationSec > 0 {
		res.ThroughputSec = float64(res.Issued) / res.DurationSec
	}

	var lat []weighted
	var lastOK time.Duration
	var oks []time.Duration
	for _, s := range samples {
		if n := s.ok + s.failed; n > 0 {
			lat = append(lat, weighted{s.latency(), int64(n)})
		}
		if s.ok > 0 {
			oks = append(oks, s.done)
			lastOK = max(lastOK, s.done)
		}
	}
	res.Latency = Latency{
		P50: ms(percentile(lat, 0.5)), P90: ms(percentile(lat, 0.9)), P99: ms(percentile(lat, 0.99)),
		P999: ms(percentile(lat, 0.999)), Max: ms(percentile(lat, 1)),
	}
	if cfg.Scenario == Storm {
		res.DrainSec = lastOK.Seconds()
	}
	if cfg.Scenario == Failover && len(oks) > 1 {
		sort.Slice(oks, func(i, j int) bool { return oks[i] < oks[j] })
		for i := 1; i < len(oks); i++ {
			if g := (oks[i] - oks[i-1]).Seconds(); g > res.MaxGapSec {
				res.MaxGapSec, res.MaxGapStartSec = g, oks[i-1].Seconds()
			}
		}
	}
	if cfg.CollectSerials {
		res.Serials = rec.Serials()
	}
	res.Timeline = timeline(samples, end.Sub(rec.start))
	res.Histogram = histogram(lat)
	return res
}

// timeline cuts the run into at most ~200 buckets of a round width.
func timeline(samples []sample, total time.Duration) []Bucket {
	width := 100 * time.Millisecond
	for _, w := range []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second} {
		if total/width <= 200 {
			break
		}
		width = w
	}
	n := int(total/width) + 1
	type acc struct {
		ok, failed int64
		lat        []weighted
	}
	accs := make([]acc, n)
	for _, s := range samples {
		i := min(int(s.done/width), n-1)
		accs[i].ok += int64(s.ok)
		accs[i].failed += int64(s.failed)
		if k := s.ok + s.failed; k > 0 {
			accs[i].lat = append(accs[i].lat, weighted{s.latency(), int64(k)})
		}
	}
	out := make([]Bucket, n)
	for i, a := range accs {
		out[i] = Bucket{AtSec: (time.Duration(i) * width).Seconds(),
			IssuedSec: float64(a.ok) / width.Seconds(), FailedSec: float64(a.failed) / width.Seconds(),
			P50Ms: ms(percentile(a.lat, 0.5)), P99Ms: ms(percentile(a.lat, 0.99))}
	}
	return out
}

// histogram bins SVID latencies logarithmically, 4 bins per power of ten.
func histogram(lat []weighted) []HistBin {
	if len(lat) == 0 {
		return nil
	}
	const perDecade = 4
	bin := func(d time.Duration) int {
		m := math.Max(float64(d.Microseconds())/1000, 0.01)
		return int(math.Floor(math.Log10(m) * perDecade))
	}
	counts := map[int]int64{}
	lo, hi := math.MaxInt, math.MinInt
	for _, l := range lat {
		b := bin(l.d)
		counts[b] += l.n
		lo, hi = min(lo, b), max(hi, b)
	}
	var out []HistBin
	for b := lo; b <= hi; b++ {
		out = append(out, HistBin{LoMs: round3(math.Pow(10, float64(b)/perDecade)),
			HiMs: round3(math.Pow(10, float64(b+1)/perDecade)), Count: counts[b]})
	}
	return out
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
