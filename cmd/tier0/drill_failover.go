package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

type failoverFlags struct {
	cluster  []string
	killDirs []string
	kill     bool
	to       string
	after    time.Duration
	timeout  time.Duration
	jsonOut  bool
}

// failoverDrill is the report of `tier0 drill failover`.
type failoverDrill struct {
	OK                  bool    `json:"ok"`
	Method              string  `json:"method"` // transfer-leadership or sigkill
	LeaderBefore        string  `json:"leader_before"`
	LeaderAfter         string  `json:"leader_after"`
	NewLeaderSeconds    float64 `json:"new_leader_seconds"`    // disruption -> another node is leader
	FirstGoodSeconds    float64 `json:"first_good_seconds"`    // disruption -> first good probe started after it
	MaxGapSeconds       float64 `json:"max_gap_seconds"`       // longest time without a good probe
	Requests            int     `json:"requests"`              // probe mints attempted
	Failed              int     `json:"failed"`                // probe mints that failed (retried by the loop)
	Received            int     `json:"received"`              // probe SVIDs received and verified
	RecordsLost         int     `json:"records_lost"`          // received SVIDs with no record in the store (must be 0)
	KilledPID           int     `json:"killed_pid,omitempty"`  // --kill-local
	ExportWaitedSeconds float64 `json:"export_waited_seconds"` // until every probe was in the record store
	Error               string  `json:"error,omitempty"`
}

func newFailoverDrillCmd(g *globalFlags) *cobra.Command {
	f := &failoverFlags{}
	cmd := &cobra.Command{
		Use:   "failover --cluster ADDRS [--kill-local --node-dirs DIRS] [--json]",
		Short: "Issue probe SVIDs continuously while leadership moves (transfer, or SIGKILL of a local leader); report time to first good issuance and records lost",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(f.cluster) == 0 {
				return errors.New("--cluster: give the API addresses of the cluster's nodes")
			}
			if f.kill && len(f.killDirs) == 0 {
				return errors.New("--kill-local needs --node-dirs: the data dirs of the local nodes (their server.json names each PID)")
			}
			d := &failoverDrill{}
			err := runFailoverDrill(cmd.Context(), g, f, d)
			if err != nil {
				d.Error = err.Error()
			}
			if perr := printJSONOr(cmd.OutOrStdout(), map[bool]string{true: "json"}[f.jsonOut], d, d.print); perr != nil {
				return perr
			}
			if err != nil {
				return fmt.Errorf("drill failover: %w", err)
			}
			if !d.OK {
				return fmt.Errorf("drill failover: %d records lost", d.RecordsLost)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.cluster, "cluster", nil, "API addresses of the cluster nodes (host:port,...)")
	fl.BoolVar(&f.kill, "kill-local", false, "SIGKILL the leader's process (local clusters only; PIDs from DATA/server.json) instead of transferring leadership")
	fl.StringSliceVar(&f.killDirs, "node-dirs", nil, "with --kill-local: data dirs of the local nodes")
	fl.StringVar(&f.to, "to", "", "transfer leadership to this node ID (default: the most up-to-date follower)")
	fl.DurationVar(&f.after, "after", 3*time.Second, "keep probing this long after the first good issuance following the disruption")
	fl.DurationVar(&f.timeout, "timeout", 2*time.Minute, "give up on a new leader / good issuance / export after this long")
	fl.BoolVar(&f.jsonOut, "json", false, "print the report as JSON")
	return cmd
}

func (d *failoverDrill) print(w io.Writer) {
	verdict := "PASSED"
	if !d.OK {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "failover drill %s (%s)\n", verdict, d.Method)
	fmt.Fprintf(w, "  leader            %s -> %s (new leader after %.2fs)\n", d.LeaderBefore, d.LeaderAfter, d.NewLeaderSeconds)
	fmt.Fprintf(w, "  first good SVID   %.2fs after the disruption (longest gap %.2fs)\n", d.FirstGoodSeconds, d.MaxGapSeconds)
	fmt.Fprintf(w, "  probes            %d requests, %d failed, %d SVIDs received and verified\n", d.Requests, d.Failed, d.Received)
	fmt.Fprintf(w, "  records lost      %d (every received SVID checked in the record store via the Audit API, %.2fs export wait)\n", d.RecordsLost, d.ExportWaitedSeconds)
	if d.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", d.Error)
	}
}

// clusterStatus asks each address for its view; unreachable ones are skipped.
func clusterStatus(ctx context.Context, g *globalFlags, addrs []string) (*tier0v1.ClusterStatusResponse, []error) {
	var errs []error
	for _, a := range addrs {
		st, err := func() (*tier0v1.ClusterStatusResponse, error) {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			gg := *g
			gg.servers = []string{a}
			c, err := dialOperator(cctx, &gg, "admin")
			if err != nil {
				return nil, err
			}
			defer c.Close()
			st, err := tier0v1.NewClusterClient(c).ClusterStatus(cctx, &tier0v1.ClusterStatusRequest{})
			if err != nil {
				return nil, cliErr(err)
			}
			return st, nil
		}()
		if err == nil && st.GetLeaderId() != "" {
			return st, errs
		}
		if err == nil {
			err = errors.New("no leader")
		}
		errs = append(errs, fmt.Errorf("%s: %w", a, err))
	}
	return nil, errs
}

func runFailoverDrill(ctx context.Context, g *globalFlags, f *failoverFlags, d *failoverDrill) error {
	d.Method = "transfer-leadership"
	if f.kill {
		d.Method = "sigkill"
	}
	// Preflight, before any change: the cluster answers and has a leader.
	st, errs := clusterStatus(ctx, g, f.cluster)
	if st == nil {
		return fmt.Errorf("cluster unreachable or without a leader, nothing changed: %w", errors.Join(errs...))
	}
	d.LeaderBefore = st.GetLeaderId()
	var victim int
	if f.kill {
		pid, err := localPID(f.killDirs, d.LeaderBefore)
		if err != nil {
			return fmt.Errorf("%w; nothing changed", err)
		}
		victim = pid
	}
	gg := *g
	gg.servers = f.cluster
	admin, err := dialOperator(ctx, &gg, "admin")
	if err != nil {
		return err
	}
	defer admin.Close()
	td, err := spiffeid.TrustDomainFromString(adminTD(g))
	if err != nil {
		return err
	}
	bundle, err := client.LoadBundleFile(filepath.Join(g.dataDir, "bundle.pem"), td)
	if err != nil {
		return err
	}
	start := time.Now()
	svid, entryID, err := enrollProbe(ctx, admin, f.cluster, td, bundle)
	if err != nil {
		return err
	}
	if entryID != "" {
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, _ = admin.Admin().DeleteEntry(cctx, &tier0v1.DeleteEntryRequest{Id: entryID})
		}()
	}
	pc, err := client.New(ctx, client.Config{Addrs: f.cluster, TrustDomain: td, Bundle: bundle, SVID: client.NewRotatingSVID(svid)})
	if err != nil {
		return err
	}
	defer pc.Close()

	p := &prober{c: pc, td: td, bundle: bundle}
	pctx, stopProbes := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); p.run(pctx) }()
	defer func() { stopProbes(); <-done }()
	if err := p.waitGood(ctx, time.Time{}, 3, f.timeout); err != nil {
		stopProbes()
		return fmt.Errorf("probes before the disruption: %w", err)
	}

	t0 := time.Now()
	if f.kill {
		if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
			return fmt.Errorf("SIGKILL leader %s (pid %d): %w", d.LeaderBefore, victim, err)
		}
		d.KilledPID = victim
	} else {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := tier0v1.NewClusterClient(admin).TransferLeadership(cctx, &tier0v1.TransferLeadershipRequest{ToNodeId: f.to})
		cancel()
		if err != nil {
			return fmt.Errorf("transfer leadership: %w", cliErr(err))
		}
	}
	deadline := t0.Add(f.timeout)
	for {
		if st, _ := clusterStatus(ctx, g, f.cluster); st != nil && st.GetLeaderId() != d.LeaderBefore {
			d.LeaderAfter, d.NewLeaderSeconds = st.GetLeaderId(), time.Since(t0).Seconds()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no new leader within %v", f.timeout)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	if err := p.waitGood(ctx, t0, 1, f.timeout); err != nil {
		return fmt.Errorf("issuance after the disruption: %w", err)
	}
	first := p.firstGoodAfter(t0)
	d.FirstGoodSeconds = first.Sub(t0).Seconds()
	time.Sleep(f.after) // keep probing on the new leader for a while
	stopProbes()
	<-done

	p.mu.Lock()
	d.Requests, d.Failed, d.Received, d.MaxGapSeconds = p.requests, p.failed, len(p.serials), p.maxGap(start).Seconds()
	serials := append([]string(nil), p.serials...)
	p.mu.Unlock()
	lost, waited, err := missingRecords(ctx, admin, td, serials, start, f.timeout)
	if err != nil {
		return err
	}
	d.RecordsLost, d.ExportWaitedSeconds = lost, waited.Seconds()
	d.OK = lost == 0
	return nil
}

// localPID finds the PID of node id among the local data dirs.
func localPID(dirs []string, id string) (int, error) {
	for _, dir := range dirs {
		raw, err := os.ReadFile(filepath.Join(dir, "server.json"))
		if err != nil {
			continue
		}
		var info serverInfo
		if json.Unmarshal(raw, &info) == nil && info.NodeID == id && info.PID > 0 {
			return info.PID, nil
		}
	}
	return 0, fmt.Errorf("--kill-local: no server.json in %s names the leader %q", strings.Join(dirs, ", "), id)
}

func adminTD(g *globalFlags) string {
	if g.td != "" {
		return g.td
	}
	var info serverInfo
	raw, _ := os.ReadFile(filepath.Join(g.dataDir, "server.json"))
	_ = json.Unmarshal(raw, &info)
	return info.TrustDomain
}

// missingRecords polls the Audit API until every serial has a record (or
// the timeout) and returns how many have none.
func missingRecords(ctx context.Context, admin *client.Client, td spiffeid.TrustDomain, serials []string, since time.Time, timeout time.Duration) (int, time.Duration, error) {
	start := time.Now()
	for {
		resp, err := admin.Audit().ListRecords(ctx, &tier0v1.ListRecordsRequest{SpiffeId: probeID(td).String(), Since: since.Add(-time.Minute).Unix(), Limit: 10000})
		if err != nil {
			return 0, 0, fmt.Errorf("audit: %w", cliErr(err))
		}
		have := map[string]bool{}
		for _, r := range resp.GetRecords() {
			have[strings.ToLower(r.GetSerial())] = true
		}
		missing := 0
		for _, s := range serials {
			if !have[s] {
				missing++
			}
		}
		if missing == 0 || time.Since(start) > timeout {
			return missing, time.Since(start), nil
		}
		time.Sleep(200 * time.Millisecond) // polling interval: export is asynchronous
	}
}
