// Command tier0-loadtest drives a tier0 server (or cluster) with a
// simulated fleet of agents renewing SVIDs, and compares tier0 with SPIRE.
// See package loadtest.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/api/client"
	"github.com/tier0-ca/tier0/internal/version"
	"github.com/tier0-ca/tier0/loadtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tier0-loadtest:", err)
		os.Exit(1)
	}
}

type flags struct {
	dataDir, out       string
	servers            []string
	agents, workloads  int
	cfg                loadtest.Config
	killAt, restartAt  time.Duration
	restartCmd         string
	failOnVerify, json bool
	serials            string // write the serials of the SVIDs received here
	keep               bool   // keep the entries made for the run
	pprof              string // serve the tester's own pprof here
}

func run(ctx context.Context, args []string) error {
	root := &cobra.Command{
		Use:           "tier0-loadtest",
		Short:         "Renewal-storm load tester for tier0 (steady, storm, ramp, failover) and tier0 vs SPIRE comparison",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	version.SetOn(root)
	for _, sc := range []struct{ name, short string }{
		{loadtest.Steady, "every SVID renewed at half life +-10% (time compressed)"},
		{loadtest.Storm, "every SVID of the fleet renewed at once; reports the drain time"},
		{loadtest.Ramp, "rising rate until p99 or errors pass a limit; reports the knee and overload goodput"},
		{loadtest.Failover, "steady renewals against a list of addresses while a node dies; reports the issuance gap"},
	} {
		root.AddCommand(scenarioCmd(sc.name, sc.short))
	}
	root.AddCommand(newCompareCmd())
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

func scenarioCmd(name, short string) *cobra.Command {
	f := &flags{}
	f.cfg.Scenario = name
	cmd := &cobra.Command{
		Use: name, Short: short, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runScenario(cmd.Context(), f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", "./tier0-data", "server data dir: server.json, bundle.pem and the admin credential")
	fl.StringSliceVar(&f.servers, "server", nil, "server address(es) (default: from DATA/server.json)")
	fl.StringVar(&f.out, "out", "", "write OUT.json and OUT.html (default loadtest-results/SCENARIO-TIME)")
	fl.IntVar(&f.agents, "agents", 10, "simulated agents")
	fl.IntVar(&f.workloads, "workloads", 10, "workloads (SVIDs) per agent")
	fl.DurationVar(&f.cfg.TTL, "ttl", time.Hour, "SVID lifetime (entry TTL, 15m..1h)")
	fl.DurationVar(&f.cfg.Duration, "duration", 30*time.Second, "run length (steady, failover); give-up time (storm, ramp)")
	fl.IntVar(&f.cfg.MaxBatch, "max-batch", 256, "items per call at most (the server's batch limit)")
	fl.DurationVar(&f.cfg.Deadline, "deadline", time.Minute, "per-call deadline from its intended time, retries included")
	fl.Float64Var(&f.cfg.VerifyRate, "verify-rate", 0.01, "fraction of SVIDs verified with go-spiffe (negative: none)")
	fl.BoolVar(&f.failOnVerify, "fail-on-errors", true, "exit non-zero on verification failures or failed SVIDs")
	fl.BoolVar(&f.json, "json", false, "print the result JSON on stdout")
	fl.StringVar(&f.serials, "serials", "", "write the serial of every SVID received to `FILE`, one a line (check them with tier0 audit check-serials)")
	fl.StringVar(&f.pprof, "pprof", "", "serve the load tester's own net/http/pprof on this loopback `ADDR`")
	fl.BoolVar(&f.keep, "keep", false, "keep the registration entries made for the run (default: deleted at the end)")
	switch name {
	case loadtest.Steady, loadtest.Failover:
		fl.Float64Var(&f.cfg.Compression, "compression", 1, "time compression factor (lifetimes and ticks divided by it)")
		fl.Float64Var(&f.cfg.Rate, "rate", 0, "target SVIDs/s (sets --compression)")
		fl.DurationVar(&f.cfg.Sync, "sync", 5*time.Second, "agent renewal tick before compression")
	case loadtest.Storm:
		fl.DurationVar(&f.cfg.Spread, "spread", 0, "agents start within this window")
	case loadtest.Ramp:
		fl.IntVar(&f.cfg.Batch, "batch", 10, "SVIDs per call")
		fl.Float64Var(&f.cfg.StartRate, "start-rate", 1000, "SVIDs/s of the first step")
		fl.Float64Var(&f.cfg.StepRate, "step-rate", 1000, "SVIDs/s added per step")
		fl.DurationVar(&f.cfg.StepDuration, "step", 3*time.Second, "step length")
		fl.IntVar(&f.cfg.MaxSteps, "max-steps", 30, "steps at most")
		fl.DurationVar(&f.cfg.P99Limit, "p99-limit", 500*time.Millisecond, "a step fails above this p99")
		fl.Float64Var(&f.cfg.ErrorLimit, "error-limit", 0.01, "a step fails above this fraction of refused or failed attempts")
		fl.Float64Var(&f.cfg.Overload, "overload", 3, "then offer this multiple of the peak goodput (0: skip)")
		fl.DurationVar(&f.cfg.OverloadDuration, "overload-duration", 10*time.Second, "length of the overload phase")
	}
	if name == loadtest.Failover {
		fl.DurationVar(&f.killAt, "kill-at", 0, "SIGKILL the server whose pid is in DATA/server.json at this offset (0: never)")
		fl.DurationVar(&f.restartAt, "restart-at", 0, "run --restart-cmd at this offset")
		fl.StringVar(&f.restartCmd, "restart-cmd", "", "shell command that restarts the killed node (run in the background)")
	}
	return cmd
}

type serverJSON struct {
	Servers []string `json:"servers"`
	PID     int      `json:"pid"`
}

func readServerJSON(dataDir string) (serverJSON, error) {
	var s serverJSON
	raw, err := os.ReadFile(filepath.Join(dataDir, "server.json"))
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(raw, &s)
}

func runScenario(ctx context.Context, f *flags) error {
	// Where the results go is checked before the run, not after it.
	out, err := prepareOut(f.out, f.cfg.Scenario, time.Now())
	if err != nil {
		return err
	}
	if err := servePprof(f.pprof); err != nil {
		return err
	}
	var serials *os.File
	if f.serials != "" {
		if serials, err = createFile(f.serials); err != nil {
			return err
		}
		defer serials.Close()
		f.cfg.CollectSerials = true
	}
	addrs := f.servers
	if len(addrs) == 0 {
		s, err := readServerJSON(f.dataDir)
		if err != nil {
			return fmt.Errorf("no --server and no usable %s/server.json: %w", f.dataDir, err)
		}
		addrs = s.Servers
	}
	bundle, cert, key := client.OperatorFiles(f.dataDir)
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	tty := isTTY(os.Stderr)
	fmt.Fprintf(os.Stderr, "setting up %d agents x %d workloads against %s\n", f.agents, f.workloads, strings.Join(addrs, ","))
	setup := time.Now()
	fleet, err := loadtest.NewFleet(ctx, loadtest.FleetConfig{
		Addrs: addrs, BundlePath: bundle, AdminCert: cert, AdminKey: key,
		Agents: f.agents, Workloads: f.workloads, TTLSeconds: int64(f.cfg.TTL / time.Second),
		RunID: hex.EncodeToString(rb[:]), Progress: setupProgress(tty),
	})
	if err != nil {
		return err
	}
	defer fleet.Close()
	if !f.keep {
		defer func() {
			// The run's context may be cancelled (Ctrl-C): clean up anyway.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			n, err := fleet.DeleteEntries(cctx)
			if err != nil {
				fmt.Fprintf(os.Stderr, "cleanup: deleted %d entries: %v (delete the rest with tier0 entry delete)\n", n, err)
				return
			}
			fmt.Fprintf(os.Stderr, "cleanup: deleted the %d registration entries of the run (--keep keeps them)\n", n)
		}()
	}
	fmt.Fprintf(os.Stderr, "setup done in %.1fs\n", time.Since(setup).Seconds())
	f.cfg.Fleet = fleet
	f.cfg.Progress, f.cfg.ProgressTTY = os.Stderr, tty
	if f.killAt > 0 {
		dir := f.dataDir
		f.cfg.Events = append(f.cfg.Events, loadtest.Event{At: f.killAt, Name: "kill", Do: func(context.Context) error {
			s, err := readServerJSON(dir)
			if err != nil {
				return err
			}
			return syscall.Kill(s.PID, syscall.SIGKILL)
		}})
	}
	if f.restartAt > 0 && f.restartCmd != "" {
		c := f.restartCmd
		f.cfg.Events = append(f.cfg.Events, loadtest.Event{At: f.restartAt, Name: "restart", Do: func(context.Context) error {
			// Detached, with no output of ours: the node outlives the load test.
			cmd := exec.Command("sh", "-c", c)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if err := cmd.Start(); err != nil {
				return err
			}
			return cmd.Process.Release()
		}})
	}
	res, err := loadtest.Run(ctx, f.cfg)
	if err != nil {
		return err
	}
	if err := writeReports(out, res); err != nil {
		return err
	}
	if serials != nil {
		if err := writeSerials(serials, res.Serials); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "wrote %d serials to %s\n", len(res.Serials), f.serials)
	}
	printSummary(res, out)
	if f.json {
		if err := loadtest.WriteJSON(os.Stdout, res); err != nil {
			return err
		}
	}
	if f.failOnVerify && (res.VerifyFailures > 0 || res.Failed > 0) {
		return fmt.Errorf("%d verification failures, %d SVIDs failed", res.VerifyFailures, res.Failed)
	}
	return nil
}

func writeReports(out string, res *loadtest.Result) error {
	for _, w := range []struct {
		ext   string
		write func(*os.File) error
	}{
		{".json", func(f *os.File) error { return loadtest.WriteJSON(f, res) }},
		{".html", func(f *os.File) error { return loadtest.WriteHTML(f, res) }},
	} {
		file, err := os.Create(out + w.ext)
		if err != nil {
			return err
		}
		if err := errors.Join(w.write(file), file.Close()); err != nil {
			return fmt.Errorf("write %s: %w", out+w.ext, err)
		}
	}
	return nil
}

func printSummary(r *loadtest.Result, out string) {
	fmt.Fprintf(os.Stderr, "%s: %d SVIDs issued, %d failed, in %.2fs (%.0f/s); p50 %.1fms p99 %.1fms; verified %d, %d failures\n",
		r.Scenario, r.Issued, r.Failed, r.DurationSec, r.ThroughputSec, r.Latency.P50, r.Latency.P99, r.Verified, r.VerifyFailures)
	if r.DrainSec > 0 {
		fmt.Fprintf(os.Stderr, "storm drained in %.2fs\n", r.DrainSec)
	}
	if r.Scenario == loadtest.Failover {
		fmt.Fprintf(os.Stderr, "longest issuance gap %.2fs from %.1fs\n", r.MaxGapSec, r.MaxGapStartSec)
	}
	if rr := r.Ramp; rr != nil {
		fmt.Fprintf(os.Stderr, "knee %.0f SVIDs/s, peak goodput %.0f/s\n", rr.KneePerSec, rr.PeakGoodput)
		if rr.Overload > 0 {
			fmt.Fprintf(os.Stderr, "overload %.1fx (%.0f/s offered): goodput %.0f/s = %.2f of peak, p99 %.0fms\n",
				rr.Overload, rr.OverloadRate, rr.OverloadGood, rr.OverloadRatio, rr.OverloadP99Ms)
		}
	}
	for k, v := range r.ErrorsByKind {
		fmt.Fprintf(os.Stderr, "  failed %s: %d\n", k, v)
	}
	for k, v := range r.RefusedByKind {
		fmt.Fprintf(os.Stderr, "  refused %s: %d\n", k, v)
	}
	fmt.Fprintf(os.Stderr, "wrote %s.json and %s.html\n", out, out)
}

func setupProgress(tty bool) func(done, total int) {
	return func(done, total int) {
		switch {
		case tty:
			fmt.Fprintf(os.Stderr, "\r\033[Ksetup: %d/%d agents", done, total)
			if done == total {
				fmt.Fprintln(os.Stderr)
			}
		case done == total || done%100 == 0:
			fmt.Fprintf(os.Stderr, "setup: %d/%d agents\n", done, total)
		}
	}
}

func isTTY(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// prepareOut returns the report path prefix (OUT for OUT.json and
// OUT.html; default loadtest-results/SCENARIO-TIME) after making its
// directory and checking that it can write there.
func prepareOut(out, scenario string, now time.Time) (string, error) {
	if out == "" {
		out = filepath.Join("loadtest-results", scenario+"-"+now.Format("20060102-150405"))
	}
	dir := filepath.Dir(out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("--out %s: %w", out, err)
	}
	probe, err := os.CreateTemp(dir, ".tier0-loadtest-")
	if err != nil {
		return "", fmt.Errorf("--out %s: cannot write in %s: %w", out, dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	return out, nil
}

// createFile creates path (and its directory) before the run.
func createFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	return os.Create(path)
}

func writeSerials(f *os.File, serials []string) error {
	w := bufio.NewWriter(f)
	for _, s := range serials {
		if _, err := fmt.Fprintln(w, s); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	return f.Close()
}
