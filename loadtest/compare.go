package loadtest

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// CompareConfig is a side-by-side run: closed-loop workers at each
// concurrency against tier0 (batch 1, and batches) and SPIRE, alternating
// target every round so that both see the same machine noise.
type CompareConfig struct {
	Fleet         *Fleet // tier0: the first agent's workloads are used
	SPIRE         svidv1.SVIDClient
	SPIRECSRs     [][]byte      // CSRs for SPIRE (SPIFFE IDs in its trust domain)
	Concurrency   []int         // default 1, 8, 32
	Rounds        int           // default 3
	RoundDuration time.Duration // default 5s
	Batch         int           // tier0 batched variant; default 100; <0 skips it
	Progress      io.Writer
}

// CompareRow is one measurement.
type CompareRow struct {
	Target      string  `json:"target"` // "tier0", "tier0-batch", "spire"
	Concurrency int     `json:"concurrency"`
	Batch       int     `json:"batch"`
	Round       int     `json:"round"`
	PerSec      float64 `json:"svids_per_sec"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"` // per call
	Errors      int64   `json:"errors"`
}

// CompareSummary gives medians over rounds and the median of the per-round
// ratios at one concurrency.
type CompareSummary struct {
	Concurrency     int     `json:"concurrency"`
	Tier0PerSec     float64 `json:"tier0_per_sec"`
	Tier0BatchSec   float64 `json:"tier0_batch_per_sec,omitempty"`
	SPIREPerSec     float64 `json:"spire_per_sec"`
	Ratio           float64 `json:"ratio"`                 // tier0 batch 1 / SPIRE
	BatchRatio      float64 `json:"batch_ratio,omitempty"` // tier0 batched / SPIRE
	Tier0P99Ms      float64 `json:"tier0_p99_ms"`
	SPIREP99Ms      float64 `json:"spire_p99_ms"`
	Tier0BatchP99Ms float64 `json:"tier0_batch_p99_ms,omitempty"`
}

// CompareResult is the whole comparison.
type CompareResult struct {
	Rows    []CompareRow     `json:"rows"`
	Summary []CompareSummary `json:"summary"`
}

// Compare runs the comparison.
func Compare(ctx context.Context, cfg CompareConfig) (*CompareResult, error) {
	if len(cfg.Concurrency) == 0 {
		cfg.Concurrency = []int{1, 8, 32}
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 3
	}
	if cfg.RoundDuration <= 0 {
		cfg.RoundDuration = 5 * time.Second
	}
	if cfg.Batch == 0 {
		cfg.Batch = 100
	}
	if cfg.Fleet == nil || len(cfg.Fleet.Agents) == 0 || len(cfg.SPIRECSRs) == 0 {
		return nil, fmt.Errorf("loadtest: compare needs a fleet and SPIRE CSRs")
	}
	agent := cfg.Fleet.Agents[0]
	targets := []struct {
		name  string
		batch int
		call  func(ctx context.Context, k int, batch int) error
	}{
		{"tier0", 1, func(ctx context.Context, k, batch int) error { return tier0Call(ctx, agent, k, batch) }},
		{"spire", 1, func(ctx context.Context, k, _ int) error {
			_, err := cfg.SPIRE.MintX509SVID(ctx, &svidv1.MintX509SVIDRequest{Csr: cfg.SPIRECSRs[k%len(cfg.SPIRECSRs)], Ttl: 3600})
			return err
		}},
	}
	if cfg.Batch > 0 {
		targets = append(targets, targets[0])
		targets[2].name, targets[2].batch = "tier0-batch", cfg.Batch
	}
	res := &CompareResult{}
	for round := range cfg.Rounds {
		for _, c := range cfg.Concurrency {
			order := slices.Clone(targets)
			if round%2 == 1 {
				slices.Reverse(order)
			}
			for _, t := range order {
				row := closedLoop(ctx, c, t.batch, cfg.RoundDuration, t.call)
				row.Target, row.Round = t.name, round
				res.Rows = append(res.Rows, row)
				if cfg.Progress != nil {
					fmt.Fprintf(cfg.Progress, "round %d c=%-3d %-12s batch %-4d %8.0f SVIDs/s  p50 %6.2fms p99 %6.2fms errors %d\n",
						round+1, c, t.name, t.batch, row.PerSec, row.P50Ms, row.P99Ms, row.Errors)
				}
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
			}
		}
	}
	res.Summary = summariseCompare(res.Rows, cfg.Concurrency)
	return res, nil
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
	return CompareRow{Concurrency: c, Batch: batch, PerSec: float64(ok.Load()) / elapsed.Seconds(),
		P50Ms: ms(percentile(lat, 0.5)), P99Ms: ms(percentile(lat, 0.99)), Errors: errs.Load()}
}

func summariseCompare(rows []CompareRow, cs []int) []CompareSummary {
	var out []CompareSummary
	for _, c := range cs {
		by := map[string][]CompareRow{}
		for _, r := range rows {
			if r.Concurrency == c {
				by[r.Target] = append(by[r.Target], r)
			}
		}
		s := CompareSummary{Concurrency: c,
			Tier0PerSec: median(by["tier0"], perSec), SPIREPerSec: median(by["spire"], perSec),
			Tier0BatchSec: median(by["tier0-batch"], perSec),
			Tier0P99Ms:    median(by["tier0"], p99), SPIREP99Ms: median(by["spire"], p99),
			Tier0BatchP99Ms: median(by["tier0-batch"], p99)}
		// Ratios of the same round (measured back to back), then the median.
		var ratios, bratios []float64
		for i := range by["spire"] {
			sp := by["spire"][i].PerSec
			if sp <= 0 {
				continue
			}
			if i < len(by["tier0"]) {
				ratios = append(ratios, by["tier0"][i].PerSec/sp)
			}
			if i < len(by["tier0-batch"]) {
				bratios = append(bratios, by["tier0-batch"][i].PerSec/sp)
			}
		}
		s.Ratio, s.BatchRatio = medianF(ratios), medianF(bratios)
		out = append(out, s)
	}
	return out
}

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
