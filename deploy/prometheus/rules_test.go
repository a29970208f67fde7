// Package prometheus tests the alert rules in this directory with promtool
// (Debian's prometheus package; deploy/dev/testenv.sh provides it).
package prometheus

import (
	"os"
	"os/exec"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/tier0-ca/tier0/internal/testenv"
)

const (
	rules = "tier0-alerts.yaml"
	tests = "tier0-alerts.test.yaml"
)

// TestPromtool: the rules are valid (promtool check rules) and their unit
// tests pass (promtool test rules).
func TestPromtool(t *testing.T) {
	promtool := testenv.Get(t, testenv.Promtool)
	for _, args := range [][]string{{"check", "rules", rules}, {"test", "rules", tests}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

// TestEveryAlertTested: each alert of the rules file fires in at least one
// unit test, so none is left that could never fire.
func TestEveryAlertTested(t *testing.T) {
	var r struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
			} `json:"rules"`
		} `json:"groups"`
	}
	var ut struct {
		Tests []struct {
			AlertRuleTest []struct {
				AlertName string           `json:"alertname"`
				ExpAlerts []map[string]any `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	for path, v := range map[string]any{rules: &r, tests: &ut} {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(raw, v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	var fired []string
	for _, tc := range ut.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fired = append(fired, a.AlertName)
			}
		}
	}
	n := 0
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			n++
			if !slices.Contains(fired, rule.Alert) {
				t.Errorf("alert %s fires in no unit test of %s", rule.Alert, tests)
			}
		}
	}
	if n < 20 {
		t.Errorf("%d alerts in %s, want at least 20", n, rules)
	}
}
