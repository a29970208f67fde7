package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/api/client"
	"github.com/tier0-ca/tier0/internal/serverinfo"
	"github.com/tier0-ca/tier0/internal/testenv"
)

// binDir holds tier0 and tier0-agent built once by TestMain: the end-to-end
// tests run them as separate processes, as a user would.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithBinaries(m, &binDir, "github.com/tier0-ca/tier0/cmd/tier0", "github.com/tier0-ca/tier0/cmd/tier0-agent"))
}

// proc is a tier0 server process.
type proc struct {
	t       *testing.T
	dataDir string
	args    []string
	env     []string // added to the test's environment
	raw     bool     // args are all of them: no --data-dir, --listen, --http added
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	log     *testenv.Buffer
	info    serverinfo.Info
}

func startServer(t *testing.T, dataDir string, args ...string) *proc {
	t.Helper()
	return startProc(t, &proc{dataDir: dataDir, args: args})
}

// startProc starts p (its dataDir and args, and env and raw if set) and
// waits until it is ready.
func startProc(t *testing.T, p *proc) *proc {
	t.Helper()
	p.t = t
	t.Cleanup(func() {
		if p.cmd != nil {
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() && p.log != nil {
			t.Logf("server log (%s):\n%s", p.dataDir, p.log.String())
		}
	})
	p.start()
	return p
}

func (p *proc) start() {
	p.t.Helper()
	p.launch()
	p.waitReady(p.exited)
}

// launch starts the process without waiting for it to be ready (cluster
// members wait for each other: start them all, then waitReady each).
func (p *proc) launch() {
	p.t.Helper()
	_ = os.Remove(filepath.Join(p.dataDir, "server.json"))
	args := append([]string{"server", "--data-dir", p.dataDir, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"}, p.args...)
	if p.raw {
		args = append([]string{"server"}, p.args...)
	}
	p.cmd = exec.Command(filepath.Join(binDir, "tier0"), args...)
	p.cmd.Env = append(os.Environ(), p.env...)
	if p.log == nil {
		p.log = &testenv.Buffer{}
	}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { _ = cmd.Wait(); close(exited) }(p.cmd, p.exited)
}

func (p *proc) waitReady(exited chan struct{}) {
	p.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			p.t.Fatalf("server exited early:\n%s", p.log.String())
		default:
		}
		raw, err := os.ReadFile(filepath.Join(p.dataDir, "server.json"))
		if err == nil && json.Unmarshal(raw, &p.info) == nil && p.info.PID == p.cmd.Process.Pid {
			resp, err := http.Get("http://" + p.info.HTTP + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
	p.t.Fatalf("server not ready within 60s:\n%s", p.log.String())
}

func (p *proc) kill() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// stop sends SIGTERM and waits (bounded) for a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("server did not stop within 30s:\n%s", p.log.String())
	}
}

// exitedNow reports whether the process has exited.
func (p *proc) exitedNow() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

func (p *proc) addr() string { return p.info.Servers[0] }

func (p *proc) td() spiffeid.TrustDomain {
	return spiffeid.RequireTrustDomainFromString(p.info.TrustDomain)
}

func (p *proc) bundle() *x509bundle.Bundle {
	p.t.Helper()
	b, err := client.LoadBundleFile(filepath.Join(p.dataDir, "bundle.pem"), p.td())
	if err != nil {
		p.t.Fatal(err)
	}
	return b
}

// cli runs a tier0 CLI command against this server's data dir.
func (p *proc) cli(args ...string) (string, error) {
	return runBin("tier0", append(args, "--data-dir", p.dataDir)...)
}

func runBin(name string, args ...string) (string, error) {
	return runWithEnv(nil, name, args...)
}

// runWithEnv runs a built command with env added to the test's
// environment; it returns stdout, and an error with stderr if it fails.
func runWithEnv(env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, name), args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}
