package ha

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/internal/testenv"
)

// TestExporterWaitsOutJournalFault: a node whose journal latched diverged
// cannot mark records exported. The exporter treats that as this node's
// fault, not the store's: it neither returns nor reports the store
// unavailable, and logs the pause once (it retries with backoff).
func TestExporterWaitsOutJournalFault(t *testing.T) {
	logs := &testenv.Buffer{}
	n := startNode(t, t.TempDir(), newTestClock(), func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	for _, a := range []string{"a", "b"} {
		if _, err := commitOne(t, n, a); err != nil {
			t.Fatal(err)
		}
	}
	bad := mustDigest(t, mustCommand(t, cmdCreateEntry, createEntryCmd{Entry{ID: "e1", Agent: "a", SPIFFEID: "spiffe://x/y"}}))
	bad[bytes.Index(bad, []byte("spiffe://x/y"))+9] = 'z'
	if err := n.raft.Apply(bad, time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if n.fsm.divergence() == nil {
		t.Fatal("the node did not latch diverged")
	}
	sink := &sliceSink{}
	done := runExporter(t, n, sink)
	waitFor(t, "the exporter to pause", func() bool { return strings.Contains(logs.String(), "export paused") })
	select {
	case err := <-done:
		t.Fatalf("RunExporter returned %v on a journal fault", err)
	default:
	}
	out := logs.String()
	if c := strings.Count(out, "export paused"); c != 1 {
		t.Errorf("%d 'export paused' lines, want 1:\n%s", c, out)
	}
	if strings.Contains(out, "RECORD STORE UNAVAILABLE") || metricValue(t, n.m.exportErrors) != 0 {
		t.Errorf("a journal fault was reported as a record store fault:\n%s", out)
	}
	if got := n.JournalStatus().ExportedSeq; got != 0 {
		t.Errorf("exported seq %d on a diverged node", got)
	}
}
