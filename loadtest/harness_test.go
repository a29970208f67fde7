package loadtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/testenv"
	"github.com/tier0-ca/tier0/loadtest"
)

// binDir holds the tier0 binary built once by TestMain: the smoke runs
// drive a real server process, as a user would.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithBinaries(m, &binDir, "github.com/tier0-ca/tier0/cmd/tier0", "github.com/tier0-ca/tier0/cmd/tier0-loadtest"))
}

// server is a tier0 server process.
type server struct {
	dataDir string
	listen  string
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	log     testenv.Buffer
	info    struct {
		Servers []string `json:"servers"`
		HTTP    string   `json:"http"`
		PID     int      `json:"pid"`
	}
}

func startServer(t *testing.T) *server {
	t.Helper()
	s := &server{dataDir: t.TempDir(), listen: "127.0.0.1:0"}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	// Restarts keep the address the agents were given.
	s.listen = s.info.Servers[0]
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("server log:\n%s", s.log.String())
		}
	})
	return s
}

func (s *server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exited != nil {
		<-s.exited // a restart: the previous process is gone first
	}
	_ = os.Remove(filepath.Join(s.dataDir, "server.json"))
	s.cmd = exec.Command(filepath.Join(binDir, "tier0"), "server", "--data-dir", s.dataDir,
		"--listen", s.listen, "--http", "127.0.0.1:0", "--log-level", "warn")
	s.cmd.Stdout, s.cmd.Stderr = &s.log, &s.log
	if err := s.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	s.exited = exited
	cmd := s.cmd
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("server exited early")
		default:
		}
		raw, err := os.ReadFile(filepath.Join(s.dataDir, "server.json"))
		if err == nil && json.Unmarshal(raw, &s.info) == nil && s.info.PID == s.cmd.Process.Pid {
			if resp, err := http.Get("http://" + s.info.HTTP + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
			}
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
	return errors.New("server not ready within 60s")
}

// kill sends SIGKILL and waits for the process to be gone.
func (s *server) kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	_ = cmd.Process.Kill()
	<-exited
}

func (s *server) stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		<-exited
	}
}

func (s *server) fleet(t *testing.T, agents, workloads int) *loadtest.Fleet {
	t.Helper()
	bundle, cert, key := client.OperatorFiles(s.dataDir)
	f, err := loadtest.NewFleet(context.Background(), loadtest.FleetConfig{
		Addrs: []string{s.listen}, BundlePath: bundle, AdminCert: cert, AdminKey: key,
		Agents: agents, Workloads: workloads, TTLSeconds: 900, RunID: strings.ToLower(t.Name()),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// records polls the Audit API until the record store holds every serial
// the run saw issued (export runs behind the journal), then returns the
// serials of all of the fleet's records.
func (s *server) records(t *testing.T, f *loadtest.Fleet, want []string) map[string]bool {
	t.Helper()
	ctx := context.Background()
	bundle, cert, key := client.OperatorFiles(s.dataDir)
	c, err := client.Dial(ctx, []string{s.listen}, nil, bundle, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := map[string]bool{}
		for _, a := range f.Agents {
			resp, err := c.Audit().ListRecords(ctx, &tier0v1.ListRecordsRequest{AgentId: a.ID.String(), Limit: 10000})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range resp.GetRecords() {
				if strings.HasPrefix(r.GetSpiffeId(), f.Prefix) {
					got[r.GetSerial()] = true
				}
			}
		}
		missing := 0
		for _, sn := range want {
			if !got[sn] {
				missing++
			}
		}
		if missing == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("record store lacks %d of %d issued serials after 30s", missing, len(want))
		}
		time.Sleep(100 * time.Millisecond) // polling the exporter's progress
	}
}

// checkRun asserts what every smoke run must show: SVIDs issued, none
// failed, every one verified by go-spiffe, and one record per SVID.
func checkRun(t *testing.T, s *server, f *loadtest.Fleet, res *loadtest.Result, rec []string, exact bool) {
	t.Helper()
	if res.Issued == 0 {
		t.Fatal("no SVIDs issued")
	}
	if res.Failed != 0 || res.VerifyFailures != 0 {
		t.Fatalf("failed %d (%v), verify failures %d (%v)", res.Failed, res.ErrorsByKind, res.VerifyFailures, res.VerifyErrors)
	}
	if res.Verified != res.Issued {
		t.Fatalf("verified %d of %d SVIDs", res.Verified, res.Issued)
	}
	if int64(len(rec)) != res.Issued {
		t.Fatalf("collected %d serials for %d SVIDs", len(rec), res.Issued)
	}
	got := s.records(t, f, rec)
	if exact && len(got) != len(rec) {
		t.Fatalf("record store holds %d records of this fleet, %d SVIDs were issued", len(got), len(rec))
	}
	var html, js bytes.Buffer
	if err := loadtest.WriteHTML(&html, res); err != nil {
		t.Fatal(err)
	}
	if err := loadtest.WriteJSON(&js, res); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(html.String(), "<svg") || strings.Contains(html.String(), "http://cdn") {
		t.Fatal("HTML report lacks inline SVG charts")
	}
}
