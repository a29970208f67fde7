package main

import (
	"bufio"
	"io"
	"maps"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestAlertMetricsExist: every tier0_ metric named in the alert rules
// (deploy/prometheus) is on a real server's /metrics (KMS CA key) right after start,
// before any error, so that the rules can be smoke-tested and rate()s
// start from zero.
func TestAlertMetricsExist(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/prometheus/tier0-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	names := map[string][]string{} // metric -> alerts using it
	metric := regexp.MustCompile(`\btier0_[a-z0-9_]+`)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, m := range metric.FindAllString(r.Expr, -1) {
				names[m] = append(names[m], r.Alert)
			}
		}
	}
	if len(names) < 15 {
		t.Fatalf("only %d metric names found in the rules: %v", len(names), names)
	}
	// A KMS CA key, as in production: a DEV-ONLY soft key has no circuit
	// breaker, hence no tier0_signer_circuit_open or tier0_signer_up series.
	srv := startServer(t, t.TempDir(), "--signer", awsBackend(t).uri)
	resp, err := http.Get("http://" + srv.info.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	exported := exportedFamilies(t, resp.Body)
	for _, n := range slices.Sorted(maps.Keys(names)) {
		if !exported[n] {
			t.Errorf("%s (alerts %v) is not on /metrics at start", n, names[n])
		}
	}
}

// exportedFamilies returns the metric families with at least one sample
// in a Prometheus text exposition.
func exportedFamilies(t *testing.T, r io.Reader) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		out[name] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
