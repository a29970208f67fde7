package loadtest_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runTool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, name), args...).CombinedOutput()
	return string(out), err
}

// TestCLIOutSerialsCleanup runs tier0-loadtest as a user would: --out in a
// directory that does not exist yet, --serials, then checks the serials
// with `tier0 audit check-serials` and that the run's entries are gone.
func TestCLIOutSerialsCleanup(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "new", "sub", "steady")
	serials := filepath.Join(dir, "serials.txt")
	log, err := runTool(t, "tier0-loadtest", "steady", "--data-dir", s.dataDir, "--server", s.listen,
		"--agents", "2", "--workloads", "3", "--duration", "2s", "--rate", "30", "--ttl", "15m",
		"--out", out, "--serials", serials)
	if err != nil {
		t.Fatalf("tier0-loadtest: %v\n%s", err, log)
	}
	for _, ext := range []string{".json", ".html"} {
		if _, err := os.Stat(out + ext); err != nil {
			t.Errorf("report %s: %v", ext, err)
		}
	}
	raw, err := os.ReadFile(serials)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(raw))
	if len(lines) < 6 {
		t.Fatalf("%d serials written, want at least one per workload (6):\n%s", len(lines), log)
	}
	if !strings.Contains(log, "cleanup: deleted the 6 registration entries of the run") {
		t.Errorf("no cleanup line in:\n%s", log)
	}
	if got, err := runTool(t, "tier0", "audit", "check-serials", serials, "--wait", "30s", "--data-dir", s.dataDir); err != nil {
		t.Errorf("check-serials: %v\n%s", err, got)
	}
	got, err := runTool(t, "tier0", "entry", "list", "-o", "json", "--data-dir", s.dataDir)
	var entries []map[string]any
	if err != nil || json.Unmarshal([]byte(got), &entries) != nil || len(entries) != 0 {
		t.Errorf("entries left after the run: %v %s", err, got)
	}
}

// TestCLIOutFailsFirst: an --out that cannot be written fails before any
// setup or load.
func TestCLIOutFailsFirst(t *testing.T) {
	s := startServer(t)
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	log, err := runTool(t, "tier0-loadtest", "steady", "--data-dir", s.dataDir, "--server", s.listen, "--out", filepath.Join(file, "x"))
	if err == nil || !strings.Contains(log, "--out "+filepath.Join(file, "x")) || strings.Contains(log, "setting up") {
		t.Fatalf("want a refusal before setup: %v\n%s", err, log)
	}
}
