package loadtest_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/loadtest"
)

// cli runs a tier0 CLI command against the server's data dir.
func (s *server) cli(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "tier0"), append(args, "--data-dir", s.dataDir)...)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// TestSteadyThroughRootRotation: a steady run during which the root is
// prepared and then activated (--force: the publish window is the
// default 10m; the node's key report is polled for): the load tester
// follows the bundle as agents do, every SVID verifies (VerifyRate 1),
// none fails, and every one is recorded once.
func TestSteadyThroughRootRotation(t *testing.T) {
	s := startServer(t)
	f := s.fleet(t, 3, 10)
	var root string
	res := run(t, loadtest.Config{Scenario: loadtest.Steady, Fleet: f, TTL: 15 * time.Minute, Rate: 100, Duration: 8 * time.Second,
		Events: []loadtest.Event{
			{At: time.Second, Name: "ca prepare", Do: func(ctx context.Context) error {
				var err error
				root, err = s.cli(ctx, "ca", "prepare")
				return err
			}},
			{At: 3 * time.Second, Name: "ca activate", Do: func(ctx context.Context) error {
				deadline := time.Now().Add(20 * time.Second)
				for {
					_, err := s.cli(ctx, "ca", "activate", root, "--force")
					if err == nil || time.Now().After(deadline) || !strings.Contains(err.Error(), "not every voter") {
						return err
					}
					time.Sleep(100 * time.Millisecond) // polling the node's key report, not synchronisation
				}
			}},
		}})
	for _, ev := range res.Events {
		if ev.Error != "" {
			t.Fatalf("event %s: %s", ev.Name, ev.Error)
		}
	}
	checkRun(t, s, f, res, res.Serials, true)
	if n := len(f.Bundle.X509Authorities()); n != 2 {
		t.Fatalf("the fleet's bundle has %d roots after the rotation, want the old and the new", n)
	}
}
