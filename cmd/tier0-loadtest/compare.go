package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"

	"github.com/tier0-ca/tier0/api/client"
	"github.com/tier0-ca/tier0/internal/flagconfig"
	"github.com/tier0-ca/tier0/loadtest"
)

type compareFlags struct {
	tier0Bin, spireDir, workDir, out string
	concurrency                      []int
	batches                          []int
	rounds                           int
	round                            time.Duration
	tier0Args                        []string
	noSPIRE                          bool
}

func newCompareCmd() *cobra.Command {
	f := &compareFlags{}
	cmd := &cobra.Command{
		Use:   "compare",
		Short: "tier0 MintX509SVIDs vs SPIRE " + loadtest.SPIREVersion + " BatchNewX509SVID and MintX509SVID on loopback, alternating, in one run",
		Long: `compare builds spire-server ` + loadtest.SPIREVersion + ` from the Go module proxy (once, cached in
--spire-dir), starts it (memory KeyManager, sqlite datastore, rate limits off) and a fresh single-node
tier0. It attests a SPIRE agent with a join token and registers 100 entries for it (as tier0's fleet
does for its agent), then measures closed-loop throughput at each --concurrency and --batches size:
tier0 Agent/MintX509SVIDs and SPIRE svid.v1.SVID/BatchNewX509SVID (both over mTLS as the agent, the
path an agent takes at renewal), and SPIRE's admin MintX509SVID at batch 1, alternating the order
every round. Each round starts with the bare limit (parse + verify CSR + x509.CreateCertificate on
all cores, in this process). It prints medians, the median per-round ratios and each server's fraction
of the limit, and writes every row to --out.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCompare(cmd.Context(), f) },
	}
	cache, _ := os.UserCacheDir()
	fl := cmd.Flags()
	fl.StringVar(&f.tier0Bin, "tier0", "", "tier0 binary (default: beside this executable, else $PATH)")
	fl.StringVar(&f.spireDir, "spire-dir", filepath.Join(cache, "tier0-loadtest", "spire-"+loadtest.SPIREVersion), "where spire-server is built and cached")
	fl.StringVar(&f.workDir, "work-dir", "", "data dirs of both servers (default: a temp dir, removed)")
	fl.StringVar(&f.out, "out", "bench-compare.json", "result JSON")
	fl.IntSliceVar(&f.concurrency, "concurrency", []int{1, 8, 32}, "concurrency levels")
	fl.IntVar(&f.rounds, "rounds", 3, "rounds (each runs every target at every concurrency)")
	fl.DurationVar(&f.round, "round", 5*time.Second, "length of one measurement")
	fl.IntSliceVar(&f.batches, "batches", []int{1, 10, 100}, "items per call (tier0 MintX509SVIDs and SPIRE BatchNewX509SVID)")
	fl.BoolVar(&f.noSPIRE, "no-spire", false, "measure tier0 and the bare limit only (no SPIRE build or server)")
	fl.StringSliceVar(&f.tier0Args, "tier0-arg", nil, "extra flags for tier0 server")
	return cmd
}

func runCompare(ctx context.Context, f *compareFlags) error {
	work := f.workDir
	if work == "" {
		d, err := os.MkdirTemp("", "tier0-compare-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		work = d
	}
	tier0Bin, err := findTier0(f.tier0Bin)
	if err != nil {
		return err
	}
	dataDir := filepath.Join(work, "tier0")
	stop, srv, err := startTier0(ctx, tier0Bin, dataDir, f.tier0Args)
	if err != nil {
		return err
	}
	defer stop()
	bundle, cert, key := client.OperatorFiles(dataDir)
	fleet, err := loadtest.NewFleet(ctx, loadtest.FleetConfig{Addrs: srv.Servers, BundlePath: bundle, AdminCert: cert, AdminKey: key,
		Agents: 1, Workloads: 100, RunID: "compare", PrecomputeCSRs: true})
	if err != nil {
		return err
	}
	defer fleet.Close()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	var csrs [][]byte
	for i := range 100 {
		csr, _, err := client.NewCSR(spiffeid.RequireFromPathf(td, "/bench/w%d", i))
		if err != nil {
			return err
		}
		csrs = append(csrs, csr)
	}
	var (
		spireMint svidv1.SVIDClient
		agent     *loadtest.SPIREAgent
		spirePID  int
	)
	if !f.noSPIRE {
		fmt.Fprintf(os.Stderr, "building spire-server %s in %s (minutes the first time)\n", loadtest.SPIREVersion, f.spireDir)
		spireBin, err := loadtest.InstallSPIRE(ctx, f.spireDir, os.Stderr)
		if err != nil {
			return err
		}
		spire, err := loadtest.StartSPIRE(ctx, spireBin, filepath.Join(work, "spire"), csrs[0])
		if err != nil {
			return err
		}
		defer spire.Stop()
		agent, err = spire.AttestAgent(ctx, csrs)
		if err != nil {
			return err
		}
		defer agent.Close()
		spireMint, spirePID = spire.Client(), spire.PID()
	}
	limit, err := loadtest.NewLimit(csrs)
	if err != nil {
		return err
	}
	res, err := loadtest.Compare(ctx, loadtest.CompareConfig{Fleet: fleet, SPIRE: spireMint, SPIREAgent: agent, SPIRECSRs: csrs,
		Limit: limit, Concurrency: f.concurrency, Batches: f.batches, Rounds: f.rounds, RoundDuration: f.round, Progress: os.Stderr,
		Tier0PID: srv.PID, Tier0HTTP: srv.HTTP, SPIREPID: spirePID})
	if err != nil {
		return err
	}
	fmt.Printf("medians of %d alternated rounds of %s; bare limit (parse+verify CSR, CreateCertificate, all cores): %.0f SVIDs/s\n",
		f.rounds, f.round, res.Summary[0].LimitPerSec)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "c\tbatch\ttier0/s\tSPIRE batch/s\tratio\tSPIRE mint/s\ttier0/limit\tSPIRE/limit\ttier0 p50/p99 ms\tSPIRE p50/p99 ms\tCPU us/SVID tier0/SPIRE\traft/SVID\t")
	for _, s := range res.Summary {
		mint := ""
		if s.SPIREMintPerSec > 0 {
			mint = strconv.FormatFloat(s.SPIREMintPerSec, 'f', 0, 64)
		}
		fmt.Fprintf(tw, "%d\t%d\t%.0f\t%.0f\t%.2fx\t%s\t%.2f\t%.2f\t%.1f/%.1f\t%.1f/%.1f\t%.0f/%.0f\t%.3f\t\n", s.Concurrency, s.Batch,
			s.Tier0PerSec, s.SPIREBatchPerSec, s.Ratio, mint, s.Tier0Fraction, s.SPIREFraction,
			s.Tier0P50Ms, s.Tier0P99Ms, s.SPIREP50Ms, s.SPIREP99Ms, s.Tier0CPUUs, s.SPIRECPUUs, s.Tier0RaftPerSVID)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(f.out, raw, 0o644)
}

func findTier0(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "tier0")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("tier0")
	if err != nil {
		return "", errors.New("no tier0 binary: build it (go build -o bin/ ./cmd/...) or pass --tier0")
	}
	return p, nil
}

// startTier0 runs a fresh single-node tier0 and waits until it is ready.
// tier0Info is what a started server wrote to DATA/server.json.
type tier0Info struct {
	Servers []string `json:"servers"`
	HTTP    string   `json:"http"`
	PID     int      `json:"pid"`
}

func startTier0(ctx context.Context, bin, dataDir string, extra []string) (func(), tier0Info, error) {
	args := append([]string{"server", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-level", "warn"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = flagconfig.StripEnv(os.Environ(), "TIER0_") // its defaults, not the environment's TIER0_<FLAG> settings
	logf, err := os.Create(dataDir + ".log")
	if err != nil {
		return nil, tier0Info{}, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, tier0Info{}, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() { _ = cmd.Process.Kill(); <-exited; logf.Close() }
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		select {
		case <-exited:
			return nil, tier0Info{}, fmt.Errorf("tier0 exited early (log %s.log)", dataDir)
		default:
		}
		var info tier0Info
		raw, err := os.ReadFile(filepath.Join(dataDir, "server.json"))
		if err == nil && json.Unmarshal(raw, &info) == nil && info.PID == cmd.Process.Pid {
			if resp, err := http.Get("http://" + info.HTTP + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return stop, info, nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond) // polling a starting process
	}
	stop()
	return nil, tier0Info{}, fmt.Errorf("tier0 not ready within 60s (log %s.log)", dataDir)
}
