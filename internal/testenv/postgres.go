package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// PGBin is the variable naming the directory with initdb and pg_ctl.
const PGBin = "TEST_PG_BIN"

// PrivatePostgres is a Postgres server of the test's own, in a temp dir on
// a free loopback port, for tests that stop and start the database: the
// shared server of TEST_DATABASE_URL is used by other packages' tests at
// the same time and must never go down.
type PrivatePostgres struct {
	t       testing.TB
	bin     string
	dir     string
	port    int
	asUser  []string // runuser prefix when running as root (initdb refuses root)
	running bool
}

// StartPrivatePostgres initialises and starts a private server with trust
// auth for user postgres, stopped at cleanup.
func StartPrivatePostgres(t testing.TB) *PrivatePostgres {
	t.Helper()
	p := &PrivatePostgres{t: t, bin: Get(t, PGBin)}
	dir, err := os.MkdirTemp("", "tier0-pg-")
	if err != nil {
		t.Fatal(err)
	}
	p.dir = dir
	t.Cleanup(func() { p.Stop(); _ = os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs a postgres user for initdb: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		p.asUser = []string{"runuser", "-u", "postgres", "--"}
	}
	addr, err := net.ResolveTCPAddr("tcp", FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	p.port = addr.Port
	p.run("initdb", "-D", filepath.Join(dir, "data"), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
	p.Start()
	return p
}

// DSN is the connection string for database db.
func (p *PrivatePostgres) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, db)
}

// Start starts the server and waits until it accepts connections.
func (p *PrivatePostgres) Start() {
	p.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=on", p.port, p.dir)
	p.run("pg_ctl", "-D", filepath.Join(p.dir, "data"), "-l", filepath.Join(p.dir, "log"), "-o", opts, "-w", "-t", "60", "start")
	p.running = true
}

// Stop stops the server at once (immediate mode: like a crash for clients).
func (p *PrivatePostgres) Stop() {
	if !p.running {
		return
	}
	p.running = false
	p.run("pg_ctl", "-D", filepath.Join(p.dir, "data"), "-m", "fast", "-w", "-t", "60", "stop")
}

func (p *PrivatePostgres) run(tool string, args ...string) {
	p.t.Helper()
	argv := append(append([]string{}, p.asUser...), filepath.Join(p.bin, tool))
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = p.dir
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
	}
	if err != nil {
		p.t.Fatalf("%s: %v\n%s", tool, err, out)
	}
}
