// Package localcluster tests deploy/local-cluster, the loopback cluster
// script of docs/OPERATIONS.md, with its documented flags.
package localcluster

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/storage/storagetest"
)

const script = "../local-cluster"

// freeBase returns a base port whose 25 ports (API, HTTP, raft of up to 5
// nodes) are free now.
func freeBase(t *testing.T) int {
	t.Helper()
	for range 50 {
		base := 20000 + 10*rand.IntN(4000)
		ok := true
		for p := base + 1; p <= base+25 && ok; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

type cluster struct {
	t   *testing.T
	bin string
	env []string
}

func (c *cluster) run(args ...string) (string, error) {
	cmd := exec.Command("bash", append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(), append([]string{"BIN=" + c.bin}, c.env...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestLocalCluster: up with -n, --base-port and a Postgres --store (its
// password from PGPASSWORD), status, down, a restart of all nodes at once,
// and the refusals (node count, password in the DSN, changed settings,
// ports in use, before anything is created).
func TestLocalCluster(t *testing.T) {
	bin := t.TempDir()
	if out, err := exec.Command("go", "build", "-C", "../..", "-o", bin+"/", "./cmd/tier0").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	rawDSN, schema := storagetest.PostgresSchema(t)
	u, err := url.Parse(rawDSN)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, bin: bin}
	if pw, ok := u.User.Password(); ok {
		c.env = append(c.env, "PGPASSWORD="+pw)
		u.User = url.User(u.User.Username())
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	dir := filepath.Join(t.TempDir(), "c")
	base := freeBase(t)
	t.Cleanup(func() { _, _ = c.run("down", dir) })

	out, err := c.run("up", dir, "-n", "3", "--base-port", fmt.Sprint(base), "--store", u.String())
	if err != nil || !strings.Contains(out, "tier0 cluster of 3 nodes up") || !strings.Contains(out, fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", base+1, base+2, base+3)) {
		t.Fatalf("up: %v\n%s", err, out)
	}
	status := func() {
		t.Helper()
		out, err := c.run("status", dir)
		if err != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		for i := 1; i <= 3; i++ {
			// One row per member: its ID, API address, then raft address.
			if !regexp.MustCompile(fmt.Sprintf(`(?m)^node%d\s+127\.0\.0\.1:\d+\s+127\.0\.0\.1:%d\s+Voter\s`, i, base+20+i)).MatchString(out) {
				t.Errorf("status lacks node%d on raft port %d:\n%s", i, base+20+i, out)
			}
		}
	}
	status()

	// A node killed (a drill) comes back with start --node.
	pid, err := os.ReadFile(filepath.Join(dir, "node3.pid"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("kill", "-9", strings.TrimSpace(string(pid))).CombinedOutput(); err != nil {
		t.Fatalf("kill node3: %v %s", err, out)
	}
	dead := func() bool { // gone, or a zombie nobody reaps
		st, err := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/status")
		return err != nil || regexp.MustCompile(`(?m)^State:\s+Z`).Match(st)
	}
	for deadline := time.Now().Add(10 * time.Second); !dead(); {
		if time.Now().After(deadline) {
			t.Fatal("node3 still alive 10s after SIGKILL")
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
	if out, err := c.run("start", dir, "--node", "3"); err != nil || !strings.Contains(out, "node3 started") {
		t.Fatalf("start --node 3: %v\n%s", err, out)
	}
	if out, err := c.run("start", dir, "--node", "3"); err == nil || !strings.Contains(out, "node3 is already running") {
		t.Fatalf("start of a running node: %v\n%s", err, out)
	}
	if out, err := c.run("start", dir, "--node", "4"); err == nil || !strings.Contains(out, "--node 4: want 1..3") {
		t.Fatalf("start --node 4: %v\n%s", err, out)
	}
	status()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"up", dir, "-n", "5"}, "was made with N=3"},
		{[]string{"up", filepath.Join(t.TempDir(), "x"), "-n", "4"}, "-n 4: want 3 or 5"},
		{[]string{"up", filepath.Join(t.TempDir(), "x"), "--store", "postgres://u:secret@db/x"}, "put the password in PGPASSWORD"},
		{[]string{"up", filepath.Join(t.TempDir(), "x"), "--bogus"}, "unknown argument --bogus"},
	} {
		out, err := c.run(tc.args...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%v: %v\n%s", tc.args, err, out)
		}
	}
	clash := filepath.Join(t.TempDir(), "clash")
	out, err = c.run("up", clash, "--base-port", fmt.Sprint(base)) // the running cluster holds these ports
	if err == nil || !strings.Contains(out, "ports in use") {
		t.Errorf("port clash: %v\n%s", err, out)
	}
	if _, err := os.Stat(clash); err == nil {
		t.Errorf("a refused up created %s", clash)
	}
	if out, err := c.run("down", dir); err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}
	if out, err := c.run("up", dir); err != nil || !strings.Contains(out, "tier0 cluster of 3 nodes up") {
		t.Fatalf("restart: %v\n%s", err, out)
	}
	status()
}
