package decisions

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/storage"
)

// store is the real SQLite record store, recording the size of each
// AppendDecisions call and failing while down is set.
type store struct {
	storage.AuditStore
	mu      sync.Mutex
	batches []int
	down    bool
}

func (s *store) AppendDecisions(ctx context.Context, ds []storage.Decision) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errors.New("connection refused")
	}
	s.batches = append(s.batches, len(ds))
	return s.AuditStore.AppendDecisions(ctx, ds)
}

func (s *store) setDown(v bool) { s.mu.Lock(); s.down = v; s.mu.Unlock() }

func (s *store) count(t *testing.T, f storage.DecisionFilter) int {
	t.Helper()
	f.Limit = storage.MaxLimit
	ds, err := s.QueryDecisions(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	return len(ds)
}

func openStore(t *testing.T) *store {
	t.Helper()
	s, err := storage.OpenAudit(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "records.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return &store{AuditStore: s}
}

// allow and deny decide what the api records for agent web asking for
// webID (granted by entry e1) and dbID (no entry).
func allow(d *Log) {
	d.Decide(storage.Decision{Caller: web.String(), Requested: webID.String(), Allowed: true, Code: "OK", Reason: "entry e1"})
}

func deny(d *Log) {
	d.Decide(storage.Decision{Caller: web.String(), Requested: dbID.String(), Code: "PermissionDenied", Reason: "ca: permission denied: no entry"})
}

var (
	web   = spiffeid.RequireFromString("spiffe://example.org/tier0/agent/web")
	webID = spiffeid.RequireFromString("spiffe://example.org/web")
	dbID  = spiffeid.RequireFromString("spiffe://example.org/db")
)

func value(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

func newLog(t *testing.T, cfg Config) (*Log, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer, cfg.NodeID = reg, "n1"
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d, reg
}

func TestFlushBatches(t *testing.T) {
	s := openStore(t)
	d, _ := newLog(t, Config{Interval: time.Hour})
	for range 12_000 {
		allow(d)
	}
	deny(d)
	if err := d.Flush(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(s.batches) != "[5000 5000 2001]" {
		t.Fatalf("batches %v, want [5000 5000 2001]", s.batches)
	}
	if got := value(d.recorded); got != 12_001 || d.Pending() != 0 {
		t.Fatalf("recorded %v, pending %d", got, d.Pending())
	}
	ds, err := s.QueryDecisions(context.Background(), storage.DecisionFilter{Denied: true})
	if err != nil || len(ds) != 1 || ds[0].Caller != web.String() || ds[0].Requested != dbID.String() || ds[0].NodeID != "n1" ||
		!strings.Contains(ds[0].Reason, "permission denied") {
		t.Fatalf("denial stored as %+v, %v", ds, err)
	}
}

func TestBufferFullDropsAndCounts(t *testing.T) {
	s := openStore(t)
	s.setDown(true)
	d, reg := newLog(t, Config{Buffer: 10, Interval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, s) }()
	for range 15 {
		allow(d)
	}
	if got := value(d.dropped); got != 5 || d.Pending() != 10 {
		t.Fatalf("dropped %v, pending %d; want 5 and 10", got, d.Pending())
	}
	// The store comes back: the ten held are written by the loop.
	s.setDown(false)
	deadline := time.Now().Add(10 * time.Second)
	for d.Pending() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("held decisions not written after the store came back")
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := s.count(t, storage.DecisionFilter{}); n != 10 {
		t.Fatalf("%d decisions stored, want 10", n)
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 2 || mfs[0].GetName() != "tier0_audit_decisions_dropped_total" || mfs[1].GetName() != "tier0_audit_decisions_recorded_total" {
		t.Fatalf("metrics registered: %v, %v", mfs, err)
	}
}

// TestFinalFlushOnShutdown: decisions pending when Run's context ends are
// written before Run returns, even with an interval that never fires.
func TestFinalFlushOnShutdown(t *testing.T) {
	s := openStore(t)
	d, _ := newLog(t, Config{Interval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, s) }()
	for range 7 {
		allow(d)
		deny(d)
	}
	if n := s.count(t, storage.DecisionFilter{}); n != 0 {
		t.Fatalf("%d written before shutdown with a 1h interval", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := s.count(t, storage.DecisionFilter{}); n != 14 || d.Pending() != 0 {
		t.Fatalf("%d stored, %d pending after Run returned; want 14 and 0", n, d.Pending())
	}
}

func TestPolicies(t *testing.T) {
	for _, c := range []struct {
		flag          string
		allows, denis int
	}{{"all", 100, 100}, {"deny", 0, 100}, {"off", 0, 0}} {
		p, err := ParsePolicy(c.flag)
		if err != nil {
			t.Fatal(err)
		}
		s := openStore(t)
		d, _ := newLog(t, Config{Policy: p})
		for range 100 {
			allow(d)
			deny(d)
		}
		if err := d.Flush(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		if all, denied := s.count(t, storage.DecisionFilter{}), s.count(t, storage.DecisionFilter{Denied: true}); all-denied != c.allows || denied != c.denis {
			t.Errorf("%s: %d allows, %d denials recorded; want %d, %d", c.flag, all-denied, denied, c.allows, c.denis)
		}
	}
	p, err := ParsePolicy("sample:0.5")
	if err != nil || p != (Policy{Mode: Sample, Rate: 0.5}) {
		t.Fatalf("sample:0.5 = %+v, %v", p, err)
	}
	for in, want := range map[string]string{
		"sample:0":   `--decisions "sample:0": the sample rate must be a number in (0, 1], e.g. sample:0.01`,
		"sample:1.5": `--decisions "sample:1.5": the sample rate must be a number in (0, 1], e.g. sample:0.01`,
		"sample:x":   `--decisions "sample:x": the sample rate must be a number in (0, 1], e.g. sample:0.01`,
		"most":       `--decisions "most": want all, deny, sample:RATE or off`,
	} {
		if _, err := ParsePolicy(in); err == nil || err.Error() != want {
			t.Errorf("ParsePolicy(%q) = %v, want %q", in, err, want)
		}
	}
}

// TestRefusalsAreNeverSampled: denials and failures (any code) are
// recorded under every policy but off; allows follow the policy.
func TestRefusalsAreNeverSampled(t *testing.T) {
	failure := storage.Decision{Caller: web.String(), Requested: webID.String(), Code: "Unavailable",
		Reason: FailedPrefix + "allowed by entry e1 but not issued: issuer error"}
	call := storage.Decision{Caller: web.String(), Requested: "/tier0.v1.Admin/CreateEntry", Code: "PermissionDenied",
		Reason: "/tier0.v1.Admin/CreateEntry: spiffe://example.org/tier0/agent/web may not call it"}
	for _, mode := range []string{"all", "deny", "sample:0.000001", "off"} {
		p, err := ParsePolicy(mode)
		if err != nil {
			t.Fatal(err)
		}
		s := openStore(t)
		d, _ := newLog(t, Config{Policy: p})
		for range 50 {
			allow(d)
			deny(d)
			d.Decide(failure)
			d.Decide(call)
		}
		if err := d.Flush(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		all, denied := s.count(t, storage.DecisionFilter{}), s.count(t, storage.DecisionFilter{Denied: true})
		wantDenied, wantAllows := 150, map[string]int{"all": 50}[mode]
		if mode == "off" {
			wantDenied = 0
		}
		if denied != wantDenied || all-denied != wantAllows {
			t.Errorf("%s: %d refusals, %d allows recorded; want %d, %d", mode, denied, all-denied, wantDenied, wantAllows)
		}
	}
	for _, c := range []struct {
		allowed      bool
		code, reason string
		want         string
	}{{true, "OK", "entry e1", "allow"}, {false, "PermissionDenied", "no entry", "deny"}, {false, "InvalidArgument", "reserved", "deny"},
		{false, "Unauthenticated", "no certificate", "deny"}, {false, "Unavailable", FailedPrefix + "x", "fail"},
		{false, "ResourceExhausted", "overloaded", "fail"}, {false, "", FailedPrefix + "x", "fail"}, {false, "", "no entry", "deny"}} {
		if got := Kind(c.allowed, c.code, c.reason); got != c.want {
			t.Errorf("Kind(%v, %s, %q) = %s, want %s", c.allowed, c.code, c.reason, got, c.want)
		}
	}
}
