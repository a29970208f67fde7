package loadtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/loadtest"
)

func run(t *testing.T, cfg loadtest.Config) *loadtest.Result {
	t.Helper()
	cfg.VerifyRate = 1
	cfg.CollectSerials = true
	res, err := loadtest.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestSteady(t *testing.T) {
	s := startServer(t)
	f := s.fleet(t, 3, 10)
	res := run(t, loadtest.Config{Scenario: loadtest.Steady, Fleet: f, TTL: 15 * time.Minute, Rate: 100, Duration: 2 * time.Second})
	checkRun(t, s, f, res, res.Serials, true)
}

func TestStorm(t *testing.T) {
	s := startServer(t)
	f := s.fleet(t, 4, 25)
	res := run(t, loadtest.Config{Scenario: loadtest.Storm, Fleet: f, Duration: time.Minute, MaxBatch: 16})
	if res.Issued != 100 || res.DrainSec <= 0 {
		t.Fatalf("storm issued %d of 100 SVIDs, drain %.2fs", res.Issued, res.DrainSec)
	}
	checkRun(t, s, f, res, res.Serials, true)
}

func TestRamp(t *testing.T) {
	s := startServer(t)
	f := s.fleet(t, 2, 10)
	res := run(t, loadtest.Config{Scenario: loadtest.Ramp, Fleet: f, Batch: 5, StartRate: 100, StepRate: 100,
		StepDuration: 500 * time.Millisecond, MaxSteps: 3, P99Limit: time.Minute, ErrorLimit: 1,
		Overload: 2, OverloadDuration: time.Second})
	if res.Ramp == nil || len(res.Ramp.Steps) == 0 || res.Ramp.PeakGoodput <= 0 {
		t.Fatalf("ramp result: %+v", res.Ramp)
	}
	checkRun(t, s, f, res, res.Serials, true)
}

// TestFailover kills the only server with SIGKILL mid-run and restarts it
// on the same address: renewals resume, none is lost, and the gap shows.
func TestFailover(t *testing.T) {
	s := startServer(t)
	f := s.fleet(t, 3, 10)
	res := run(t, loadtest.Config{Scenario: loadtest.Failover, Fleet: f, TTL: 15 * time.Minute, Rate: 100,
		Duration: 3 * time.Second, Events: []loadtest.Event{
			{At: time.Second, Name: "kill", Do: func(context.Context) error { s.kill(); return nil }},
			{At: 1200 * time.Millisecond, Name: "restart", Do: func(context.Context) error { return s.start() }},
		}})
	for _, ev := range res.Events {
		if ev.Error != "" {
			t.Fatalf("event %s: %s", ev.Name, ev.Error)
		}
	}
	if len(res.Events) != 2 || res.MaxGapSec < 0.2 {
		t.Fatalf("events %+v, longest gap %.2fs: the kill did not show", res.Events, res.MaxGapSec)
	}
	// A call cut by the kill may have committed records whose answer was
	// lost: the store holds every issued SVID, and maybe more.
	checkRun(t, s, f, res, res.Serials, false)
}
