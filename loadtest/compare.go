package loadtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// CompareConfig is a side-by-side run: closed-loop workers at each
// concurrency and batch size against tier0's Agent/MintX509SVIDs and
// SPIRE's agent path (svid.v1.SVID/BatchNewX509SVID over mTLS with an
// attested agent), plus SPIRE's admin MintX509SVID at batch 1, alternating
// the order every round so that both see the same machine noise. Each
// round starts with the bare limit (Limit) on all cores.
type CompareConfig struct {
	Fleet         *Fleet // tier0: the first agent's workloads are used
	SPIRE         svidv1.SVIDClient
	SPIREAgent    *SPIREAgent   // BatchNewX509SVID; nil skips the SPIRE agent path
	SPIRECSRs     [][]byte      // CSRs for SPIRE MintX509SVID (SPIFFE IDs in its trust domain)
	Limit         *Limit        // nil skips the bare limit
	Concurrency   []int         // default 1, 8, 32
	Batches       []int         // default 1, 10, 100
	Rounds        int           // default 3
	RoundDuration time.Duration // default 5s
	Progress      io.Writer
	// Tier0PID and SPIREPID, when set, give each row the server's CPU
	// time per SVID (from /proc); Tier0HTTP (its /metrics address) gives
	// tier0 rows raft entries per SVID.
	Tier0PID, SPIREPID int
	Tier0HTTP          string
}

// CompareRow is one measurement.
type CompareRow struct {
	Target      string  `json:"target"` // "tier0", "spire-batch", "spire-mint", "limit"
	Concurrency int     `json:"concurrency"`
	Batch       int     `json:"batch"`
	Round       int     `json:"round"`
	PerSec      float64 `json:"svids_per_sec"`
	P50Ms       float64 `json:"p50_ms"` // per call
	P99Ms       float64 `json:"p99_ms"` // per call
	Errors      int64   `json:"errors"`
	Load1       float64 `json:"load1"` // 1-minute load average at the start
	svids       int64
	// CPUUsPerSVID is the server's CPU time (user+system) per SVID issued.
	CPUUsPerSVID float64 `json:"server_cpu_us_per_svid,omitempty"`
	// RaftPerSVID is tier0's raft log growth per SVID (journal entries,
	// "exported" marks and anything else committed meanwhile).
	RaftPerSVID float64 `json:"raft_entries_per_svid,omitempty"`
}

// CompareSummary gives medians over rounds (and min..max spread) at one
// concurrency and batch size, and the median of the per-round ratios.
type CompareSummary struct {
	Concurrency      int     `json:"concurrency"`
	Batch            int     `json:"batch"`
	Tier0PerSec      float64 `json:"tier0_per_sec"`
	Tier0Min         float64 `json:"tier0_min"`
	Tier0Max         float64 `json:"tier0_max"`
	SPIREBatchPerSec float64 `json:"spire_batch_per_sec"`
	SPIREMin         float64 `json:"spire_batch_min"`
	SPIREMax         float64 `json:"spire_batch_max"`
	Ratio            float64 `json:"ratio"`                          // tier0 / SPIRE BatchNewX509SVID
	SPIREMintPerSec  float64 `json:"spire_mint_per_sec,omitempty"`   // batch 1 only
	MintRatio        float64 `json:"ratio_vs_spire_mint,omitempty"`  // tier0 / SPIRE MintX509SVID
	LimitPerSec      float64 `json:"limit_per_sec,omitempty"`        // bare limit, median of rounds
	Tier0Fraction    float64 `json:"tier0_limit_fraction,omitempty"` // tier0 / limit, median per round
	SPIREFraction    float64 `json:"spire_limit_fraction,omitempty"` // SPIRE batch / limit
	Tier0CPUUs       float64 `json:"tier0_cpu_us_per_svid,omitempty"`
	SPIRECPUUs       float64 `json:"spire_batch_cpu_us_per_svid,omitempty"`
	Tier0RaftPerSVID float64 `json:"tier0_raft_entries_per_svid,omitempty"`
	Tier0P50Ms       float64 `json:"tier0_p50_ms"`
	Tier0P99Ms       float64 `json:"tier0_p99_ms"`
	SPIREP50Ms       float64 `json:"spire_batch_p50_ms"`
	SPIREP99Ms       float64 `json:"spire_batch_p99_ms"`
}

// CompareResult is the whole comparison.
type CompareResult struct {
	Rows    []CompareRow     `json:"rows"`
	Summary []CompareSummary `json:"summary"`
}

type compareTarget struct {
	name  string
	batch int
	call  func(ctx context.Context, k int, batch int) error
	pid   int
	http  string
}

// Compare runs the comparison.
func Compare(ctx context.Context, cfg CompareConfig) (*CompareResult, error) {
	if len(cfg.Concurrency) == 0 {
		cfg.Concurrency = []int{1, 8, 32}
	}
	if len(cfg.Batches) == 0 {
		cfg.Batches = []int{1, 10, 100}
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 3
	}
	if cfg.RoundDuration <= 0 {
		cfg.RoundDuration = 5 * time.Second
	}
	if cfg.Fleet == nil || len(cfg.Fleet.Agents) == 0 || len(cfg.SPIRECSRs) == 0 {
		return nil, fmt.Errorf("loadtest: compare needs a fleet and SPIRE CSRs")
	}
	agent := cfg.Fleet.Agents[0]
	res := &CompareResult{}
	progress := func(row CompareRow) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "round %d c=%-3d %-12s batch %-4d %8.0f SVIDs/s  p50 %7.2fms p99 %7.2fms errors %d load %.1f cpu %.0fus/svid raft %.3f/svid\n",
				row.Round+1, row.Concurrency, row.Target, row.Batch, row.PerSec, row.P50Ms, row.P99Ms, row.Errors, row.Load1, row.CPUUsPerSVID, row.RaftPerSVID)
		}
	}
	for round := range cfg.Rounds {
		if cfg.Limit != nil {
			load := load1()
			ps, err := cfg.Limit.Run(ctx, cfg.RoundDuration)
			if err != nil {
				return res, err
			}
			row := CompareRow{Target: "limit", Batch: 1, Round: round, PerSec: ps, Load1: load}
			res.Rows = append(res.Rows, row)
			progress(row)
		}
		for _, c := range cfg.Concurrency {
			for _, b := range cfg.Batches {
				targets := []compareTarget{{"tier0", b, func(ctx context.Context, k, batch int) error { return tier0Call(ctx, agent, k, batch) }, cfg.Tier0PID, cfg.Tier0HTTP}}
				if cfg.SPIREAgent != nil {
					targets = append(targets, compareTarget{"spire-batch", b, cfg.SPIREAgent.BatchNew, cfg.SPIREPID, ""})
				}
				if b == 1 && cfg.SPIRE != nil {
					targets = append(targets, compareTarget{"spire-mint", 1, func(ctx context.Context, k, _ int) error {
						_, err := cfg.SPIRE.MintX509SVID(ctx, &svidv1.MintX509SVIDRequest{Csr: cfg.SPIRECSRs[k%len(cfg.SPIRECSRs)], Ttl: 3600})
						return err
					}, cfg.SPIREPID, ""})
				}
				if round%2 == 1 {
					slices.Reverse(targets)
				}
				for _, t := range targets {
					load := load1()
					cpu0 := procCPU(t.pid)
					raft0, raftOK := scrapeGauge(t.http, "tier0_raft_log_last_index")
					row := closedLoop(ctx, c, t.batch, cfg.RoundDuration, t.call)
					row.Target, row.Round, row.Load1 = t.name, round, load
					if n := row.svids; n > 0 {
						if t.pid > 0 {
							row.CPUUsPerSVID = float64((procCPU(t.pid) - cpu0).Microseconds()) / float64(n)
						}
						if raft1, ok := scrapeGauge(t.http, "tier0_raft_log_last_index"); ok && raftOK {
							row.RaftPerSVID = (raft1 - raft0) / float64(n)
						}
					}
					res.Rows = append(res.Rows, row)
					progress(row)
					if ctx.Err() != nil {
						return res, ctx.Err()
					}
				}
			}
		}
	}
	res.Summary = summariseCompare(res.Rows, cfg.Concurrency, cfg.Batches)
	return res, nil
}

// load1 is the 1-minute load average (0 where /proc/loadavg is unreadable).
func load1() float64 {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	_, _ = fmt.Sscanf(string(raw), "%f", &l)
	return l
}

func tier0Call(ctx context.Context, a *Agent, k, batch int) error {
	req := &tier0v1.MintX509SVIDsRequest{Items: make([]*tier0v1.MintItem, batch)}
	for i := range batch {
		req.Items[i] = &tier0v1.MintItem{Csr: a.Workloads[(k*batch+i)%len(a.Workloads)].CSR}
	}
	resp, err := a.Client.Agent().MintX509SVIDs(ctx, req)
	if err != nil {
		return err
	}
	for _, r := range resp.GetResults() {
		if r.GetError() != nil {
			return fmt.Errorf("item: %s", r.GetError().GetMessage())
		}
	}
	return nil
}

// closedLoop runs c workers, each calling as soon as its last call returned.
func closedLoop(ctx context.Context, c, batch int, d time.Duration, call func(context.Context, int, int) error) CompareRow {
	var (
		wg     sync.WaitGroup
		lat    []weighted
		ok     atomic.Int64
		errs   atomic.Int64
		next   atomic.Int64
		start  = time.Now()
		end    = start.Add(d)
		perW   = make([][]weighted, c)
		cctx   context.Context
		cancel context.CancelFunc
	)
	cctx, cancel = context.WithDeadline(ctx, end.Add(30*time.Second))
	defer cancel()
	for w := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) && cctx.Err() == nil {
				t0 := time.Now()
				if err := call(cctx, int(next.Add(1)), batch); err != nil {
					errs.Add(1)
					continue
				}
				ok.Add(int64(batch))
				perW[w] = append(perW[w], weighted{time.Since(t0), 1})
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, l := range perW {
		lat = append(lat, l...)
	}
	return CompareRow{Concurrency: c, Batch: batch, PerSec: float64(ok.Load()) / elapsed.Seconds(), svids: ok.Load(),
		P50Ms: ms(percentile(lat, 0.5)), P99Ms: ms(percentile(lat, 0.99)), Errors: errs.Load()}
}

func summariseCompare(rows []CompareRow, cs, bs []int) []CompareSummary {
	limit := map[int]float64{} // by round
	var limits []float64
	for _, r := range rows {
		if r.Target == "limit" {
			limit[r.Round] = r.PerSec
			limits = append(limits, r.PerSec)
		}
	}
	var out []CompareSummary
	for _, c := range cs {
		for _, b := range bs {
			by := map[string]map[int]CompareRow{}
			for _, r := range rows {
				if r.Concurrency == c && r.Batch == b && r.Target != "limit" {
					if by[r.Target] == nil {
						by[r.Target] = map[int]CompareRow{}
					}
					by[r.Target][r.Round] = r
				}
			}
			list := func(t string) []CompareRow {
				var l []CompareRow
				for _, r := range by[t] {
					l = append(l, r)
				}
				return l
			}
			t0, sp := list("tier0"), list("spire-batch")
			s := CompareSummary{Concurrency: c, Batch: b,
				Tier0PerSec: median(t0, perSec), SPIREBatchPerSec: median(sp, perSec),
				SPIREMintPerSec: median(list("spire-mint"), perSec),
				Tier0P50Ms:      median(t0, p50), Tier0P99Ms: median(t0, p99),
				SPIREP50Ms: median(sp, p50), SPIREP99Ms: median(sp, p99),
				Tier0CPUUs: median(t0, cpuUs), SPIRECPUUs: median(sp, cpuUs), Tier0RaftPerSVID: median(t0, raftPer),
				LimitPerSec: medianF(limits)}
			s.Tier0Min, s.Tier0Max = spread(t0)
			s.SPIREMin, s.SPIREMax = spread(sp)
			// Ratios of the same round (measured back to back), then the median.
			var ratios, mratios, tf, sf []float64
			for round, r := range by["tier0"] {
				if o, ok := by["spire-batch"][round]; ok && o.PerSec > 0 {
					ratios = append(ratios, r.PerSec/o.PerSec)
				}
				if o, ok := by["spire-mint"][round]; ok && o.PerSec > 0 {
					mratios = append(mratios, r.PerSec/o.PerSec)
				}
				if l := limit[round]; l > 0 {
					tf = append(tf, r.PerSec/l)
					if o, ok := by["spire-batch"][round]; ok {
						sf = append(sf, o.PerSec/l)
					}
				}
			}
			s.Ratio, s.MintRatio = medianF(ratios), medianF(mratios)
			s.Tier0Fraction, s.SPIREFraction = medianF(tf), medianF(sf)
			out = append(out, s)
		}
	}
	return out
}

func spread(rows []CompareRow) (lo, hi float64) {
	for i, r := range rows {
		if i == 0 || r.PerSec < lo {
			lo = r.PerSec
		}
		if r.PerSec > hi {
			hi = r.PerSec
		}
	}
	return lo, hi
}

func p50(r CompareRow) float64     { return r.P50Ms }
func cpuUs(r CompareRow) float64   { return r.CPUUsPerSVID }
func raftPer(r CompareRow) float64 { return r.RaftPerSVID }

func perSec(r CompareRow) float64 { return r.PerSec }
func p99(r CompareRow) float64    { return r.P99Ms }

func median(rows []CompareRow, f func(CompareRow) float64) float64 {
	v := make([]float64, len(rows))
	for i, r := range rows {
		v[i] = f(r)
	}
	return medianF(v)
}

func medianF(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
