package main

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/internal/testenv"
)

// TestServerFromEnv: `TIER0_LISTEN=ADDR tier0 server` with no flags listens
// where told, and so on for every flag; variables of the same prefix that
// name no flag (test and tool switches) do not stop it.
func TestServerFromEnv(t *testing.T) {
	dir := t.TempDir()
	api, httpAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	p := startProc(t, &proc{dataDir: dir, raw: true, env: []string{
		"TIER0_LISTEN=" + api, "TIER0_HTTP=" + httpAddr, "TIER0_DATA_DIR=" + dir,
		"TIER0_TRUST_DOMAIN=env.example", "TIER0_REQUIRE_INTEGRATION=1", "TIER0_CLUSTER_BENCH=0",
	}})
	if p.info.Servers[0] != api || p.info.HTTP != httpAddr || p.info.TrustDomain != "env.example" {
		t.Fatalf("server.json = %+v, want API %s, HTTP %s, trust domain env.example", p.info, api, httpAddr)
	}
	conn, err := net.DialTimeout("tcp", api, 5*time.Second)
	if err != nil {
		t.Fatalf("nothing listens on TIER0_LISTEN=%s: %v", api, err)
	}
	conn.Close()
	if want := `listen="` + api + ` (TIER0_LISTEN)"`; !strings.Contains(p.log.String(), want) {
		t.Errorf("the configuration log line lacks %s", want)
	}
	// A CLI command finds the same data dir through TIER0_DATA_DIR.
	if out, err := runWithEnv([]string{"TIER0_DATA_DIR=" + dir, "TIER0_DATA="}, "tier0", "entry", "list", "-o", "json"); err != nil {
		t.Fatalf("entry list via TIER0_DATA_DIR: %v\n%s", err, out)
	}
}

// TestServerFromConfigFile: `tier0 server --config F` listens where F says,
// and the precedence flag > env > file holds flag by flag. The store DSN
// (secret: it may hold a password) is logged by its source only.
func TestServerFromConfigFile(t *testing.T) {
	dir := t.TempDir()
	storeDir := filepath.Join(t.TempDir(), "s3cret-marker")
	if err := os.Mkdir(storeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	api, fileHTTP, envHTTP, flagHTTP := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfg := filepath.Join(t.TempDir(), "tier0.yaml")
	body := "# tier0 server configuration\n" +
		"data-dir: " + dir + "\n" +
		"listen: " + api + "\n" +
		"http: " + fileHTTP + "\n" +
		"trust-domain: file.example\n" +
		"node-id: from-file\n" +
		"store: sqlite:" + filepath.Join(storeDir, "records.db") + "\n" +
		"max-queue: 64\n"
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, &proc{dataDir: dir, raw: true,
		args: []string{"--config", cfg, "--http", flagHTTP},
		env:  []string{"TIER0_NODE_ID=from-env", "TIER0_HTTP=" + envHTTP, "TIER0_DATA="},
	})
	if p.info.Servers[0] != api || p.info.TrustDomain != "file.example" {
		t.Errorf("server.json = %+v: want listen %s and trust domain file.example from the file", p.info, api)
	}
	if p.info.NodeID != "from-env" {
		t.Errorf("node ID %q: the environment must beat the file", p.info.NodeID)
	}
	if p.info.HTTP != flagHTTP {
		t.Errorf("HTTP %q: the flag (%s) must beat the environment (%s) and the file (%s)", p.info.HTTP, flagHTTP, envHTTP, fileHTTP)
	}
	if _, err := os.Stat(filepath.Join(storeDir, "records.db")); err != nil {
		t.Errorf("the store from the file is not used: %v", err)
	}
	log := p.log.String()
	if strings.Contains(log, "s3cret-marker") {
		t.Errorf("the store DSN appears in the log:\n%s", log)
	}
	for _, want := range []string{
		`store="<redacted> (` + cfg + `:7 store)"`,
		`listen="` + api + ` (` + cfg + `:3 listen)"`,
		`node-id="from-env (TIER0_NODE_ID)"`,
		`http="` + flagHTTP + ` (--http)"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the configuration log line lacks %s", want)
		}
	}
	if out, err := p.cli("entry", "list"); err != nil {
		t.Fatalf("CLI against the configured server: %v\n%s", err, out)
	}
}

// TestServerConfigErrors: a bad key or value stops the server before it
// starts, with an error that names where the bad input is.
func TestServerConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "tier0.yaml")
	if err := os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nlisten-address: 127.0.0.1:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{name: "unknown key", args: []string{"--config", cfg}, want: cfg + `:2: unknown key "listen-address"`},
		{name: "bad env value", env: []string{"TIER0_MAX_QUEUE=lots"}, want: "environment TIER0_MAX_QUEUE"},
		{name: "missing file", env: []string{"TIER0_CONFIG=" + filepath.Join(dir, "nope.yaml")}, want: "nope.yaml"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"server", "--data-dir", dir}, tc.args...)
			out, err := runWithEnv(tc.env, "tier0", args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %q\n%s", err, tc.want, out)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "raft")); err == nil {
		t.Error("a server with a bad configuration created state")
	}
}

// TestClientFlagsNotOnServer: the flags that say which server a CLI
// command talks to mean nothing to `tier0 server`: not in its help, and
// refused; every CLI verb still has them.
func TestClientFlagsNotOnServer(t *testing.T) {
	clientFlag := regexp.MustCompile(`--(server|credential|trust-domain-of-server)\b`)
	help, err := runBin("tier0", "server", "--help")
	if err != nil {
		t.Fatal(err)
	}
	if m := clientFlag.FindString(help); m != "" {
		t.Errorf("tier0 server --help shows %s:\n%s", m, help)
	}
	if !strings.Contains(help, "--config") || !strings.Contains(help, "--data-dir") {
		t.Errorf("tier0 server --help lacks --config or --data-dir:\n%s", help)
	}
	if _, err := runBin("tier0", "server", "--credential", t.TempDir()); err == nil || !strings.Contains(err.Error(), "unknown flag: --credential") {
		t.Errorf("tier0 server --credential: %v", err)
	}
	for _, verb := range [][]string{
		{"token", "create"}, {"entry", "list"}, {"audit", "list"}, {"storage", "migrate"}, {"ca", "list"},
		{"signer", "test"}, {"federation", "list"}, {"cluster", "status"}, {"backup", "create"}, {"backup", "restore"}, {"drill", "restore"},
	} {
		out, err := runBin("tier0", append(verb, "--help")...)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(uniq(clientFlag.FindAllString(out, -1))); got != 3 {
			t.Errorf("tier0 %s --help shows %d of the 3 client flags:\n%s", strings.Join(verb, " "), got, out)
		}
	}
}

func uniq(s []string) map[string]bool {
	m := map[string]bool{}
	for _, v := range s {
		m[v] = true
	}
	return m
}

// TestDrillScratchNodeIgnoresServerEnv: `tier0 drill restore` run where the
// real server's TIER0_<FLAG> settings are in the environment (a pod, a
// systemd shell) starts its scratch node on its own flags only: here those
// settings would make it fail (a config file it cannot read, a cluster to
// join).
func TestDrillScratchNodeIgnoresServerEnv(t *testing.T) {
	dir := t.TempDir()
	startServer(t, dir)
	bad := filepath.Join(t.TempDir(), "tier0.yaml")
	if err := os.WriteFile(bad, []byte("not-a-flag: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runWithEnv([]string{"TIER0_CONFIG=" + bad, "TIER0_JOIN=127.0.0.1:1", "TIER0_RAFT_ADDR=127.0.0.1:1"},
		"tier0", "drill", "restore", "-o", "json", "--data-dir", dir)
	if err != nil || !strings.Contains(out, `"ok": true`) {
		t.Fatalf("drill restore with the server's environment: %v\n%s", err, out)
	}
}
