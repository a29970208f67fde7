package loadtest_test

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/loadtest"
)

// TestStormRetriesAreIdempotent: a storm whose attempts time out after
// 40ms, so that many calls are abandoned by the client after the server
// committed them and retried (same idempotency keys, same CSRs), still
// leaves exactly one record per delivered SVID (the server answers a
// retry with what it committed, tier0_svids_issued_total{kind=
// "workload_replayed"}), and no item fails.
func TestStormRetriesAreIdempotent(t *testing.T) {
	s := startServer(t)
	f := s.fleet(t, 4, 50)
	res := run(t, loadtest.Config{Scenario: loadtest.Storm, Fleet: f, Duration: time.Minute, MaxBatch: 25,
		AttemptTimeout: 40 * time.Millisecond, Deadline: 50 * time.Second})
	if res.Issued != 200 {
		t.Fatalf("storm issued %d of 200 SVIDs (failed %d: %v)", res.Issued, res.Failed, res.ErrorsByKind)
	}
	checkRun(t, s, f, res, res.Serials, true)
	t.Logf("%d SVIDs, %d retries, %s replayed by the server, one record each", res.Issued, res.Retries, replayed(t, s))
}

// replayed reads the server's count of retries answered with a committed SVID.
func replayed(t *testing.T, s *server) string {
	resp, err := http.Get("http://" + s.info.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, `tier0_svids_issued_total{kind="workload_replayed"}`) {
			return strings.Fields(l)[1]
		}
	}
	return "?"
}
