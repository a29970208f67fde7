package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/operator"
	"github.com/tier0-ca/tier0/internal/serverinfo"
)

// FailoverReport is the report of the failover drill (`tier0 drill failover`).
type FailoverReport struct {
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

// Print writes the report as text.
func (d *FailoverReport) Print(w io.Writer) {
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
func clusterStatus(ctx context.Context, o operator.Options, addrs []string) (*tier0v1.ClusterStatusResponse, []error) {
	var errs []error
	for _, a := range addrs {
		st, err := func() (*tier0v1.ClusterStatusResponse, error) {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			oo := o
			oo.Servers = []string{a}
			c, err := operator.Dial(cctx, oo, "admin")
			if err != nil {
				return nil, err
			}
			defer c.Close()
			st, err := tier0v1.NewClusterClient(c).ClusterStatus(cctx, &tier0v1.ClusterStatusRequest{})
			if err != nil {
				return nil, operator.Err(err)
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

// FailoverConfig configures Failover.
type FailoverConfig struct {
	Source    operator.Options // admin credential and bundle of the cluster
	Cluster   []string         // API addresses of the cluster's nodes
	KillLocal bool             // SIGKILL the leader's process instead of transferring leadership
	NodeDirs  []string         // with KillLocal: data dirs of the local nodes (server.json names each PID)
	To        string           // transfer leadership to this node ID ("": the most up-to-date follower)
	After     time.Duration    // keep probing this long after the first good issuance following the disruption
	Timeout   time.Duration    // give up on a new leader / good issuance / export after this long
}

// Failover issues probe SVIDs continuously while leadership moves and
// fills d: time to the first good issuance and records lost (d.OK: none).
func Failover(ctx context.Context, f FailoverConfig, d *FailoverReport) error {
	g := f.Source
	d.Method = "transfer-leadership"
	if f.KillLocal {
		d.Method = "sigkill"
	}
	// Preflight, before any change: the cluster answers and has a leader.
	st, errs := clusterStatus(ctx, g, f.Cluster)
	if st == nil {
		return fmt.Errorf("cluster unreachable or without a leader, nothing changed: %w", errors.Join(errs...))
	}
	d.LeaderBefore = st.GetLeaderId()
	var victim int
	if f.KillLocal {
		pid, err := localPID(f.NodeDirs, d.LeaderBefore)
		if err != nil {
			return fmt.Errorf("%w; nothing changed", err)
		}
		victim = pid
	}
	gg := g
	gg.Servers = f.Cluster
	admin, err := operator.Dial(ctx, gg, "admin")
	if err != nil {
		return err
	}
	defer admin.Close()
	td, err := spiffeid.TrustDomainFromString(g.TrustDomainName())
	if err != nil {
		return err
	}
	bundle, err := client.LoadBundleFile(filepath.Join(g.DataDir, "bundle.pem"), td)
	if err != nil {
		return err
	}
	start := time.Now()
	svid, entryID, err := enrollProbe(ctx, admin, f.Cluster, td, bundle)
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
	pc, err := client.New(ctx, client.Config{Addrs: f.Cluster, TrustDomain: td, Bundle: bundle, SVID: client.NewRotatingSVID(svid)})
	if err != nil {
		return err
	}
	defer pc.Close()

	p := &prober{c: pc, td: td, bundle: bundle}
	pctx, stopProbes := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); p.run(pctx) }()
	defer func() { stopProbes(); <-done }()
	if err := p.waitGood(ctx, time.Time{}, 3, f.Timeout); err != nil {
		stopProbes()
		return fmt.Errorf("probes before the disruption: %w", err)
	}

	t0 := time.Now()
	if f.KillLocal {
		if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
			return fmt.Errorf("SIGKILL leader %s (pid %d): %w", d.LeaderBefore, victim, err)
		}
		d.KilledPID = victim
	} else {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := tier0v1.NewClusterClient(admin).TransferLeadership(cctx, &tier0v1.TransferLeadershipRequest{ToNodeId: f.To})
		cancel()
		if err != nil {
			return fmt.Errorf("transfer leadership: %w", operator.Err(err))
		}
	}
	deadline := t0.Add(f.Timeout)
	for {
		if st, _ := clusterStatus(ctx, g, f.Cluster); st != nil && st.GetLeaderId() != d.LeaderBefore {
			d.LeaderAfter, d.NewLeaderSeconds = st.GetLeaderId(), time.Since(t0).Seconds()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no new leader within %v", f.Timeout)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	if err := p.waitGood(ctx, t0, 1, f.Timeout); err != nil {
		return fmt.Errorf("issuance after the disruption: %w", err)
	}
	first := p.firstGoodAfter(t0)
	d.FirstGoodSeconds = first.Sub(t0).Seconds()
	time.Sleep(f.After) // keep probing on the new leader for a while
	stopProbes()
	<-done

	p.mu.Lock()
	d.Requests, d.Failed, d.Received, d.MaxGapSeconds = p.requests, p.failed, len(p.serials), p.maxGap(start).Seconds()
	serials := append([]string(nil), p.serials...)
	p.mu.Unlock()
	lost, waited, err := missingRecords(ctx, admin, td, serials, start, f.Timeout)
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
		if info, err := serverinfo.Read(dir); err == nil && info.NodeID == id && info.PID > 0 {
			return info.PID, nil
		}
	}
	return 0, fmt.Errorf("--kill-local: no server.json in %s names the leader %q", strings.Join(dirs, ", "), id)
}

// missingRecords polls the Audit API until every serial has a record (or
// the timeout) and returns how many have none.
func missingRecords(ctx context.Context, admin *client.Client, td spiffeid.TrustDomain, serials []string, since time.Time, timeout time.Duration) (int, time.Duration, error) {
	start := time.Now()
	for {
		resp, err := admin.Audit().ListRecords(ctx, &tier0v1.ListRecordsRequest{SpiffeId: probeID(td).String(), Since: since.Add(-time.Minute).Unix(), Limit: 10000})
		if err != nil {
			return 0, 0, fmt.Errorf("audit: %w", operator.Err(err))
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
