package ha

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tier0-ca/tier0/ca/record"
)

// testClock is a settable clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	return &testClock{now: time.Date(2030, 1, 2, 3, 4, 5, 678901234, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func fastRaft(rc *raft.Config) {
	rc.HeartbeatTimeout = 100 * time.Millisecond
	rc.ElectionTimeout = 100 * time.Millisecond
	rc.LeaderLeaseTimeout = 50 * time.Millisecond
	rc.CommitTimeout = 5 * time.Millisecond
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// startNode opens a bootstrapped single node in dir and waits for leadership.
func startNode(t testing.TB, dir string, clock *testClock, mod ...func(*Config)) *Node {
	t.Helper()
	cfg := Config{
		NodeID: "n1", DataDir: dir, Bootstrap: true, Logger: testLogger(t),
		Clock: clock.Now, tune: fastRaft,
	}
	for _, m := range mod {
		m(&cfg)
	}
	n, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.WaitLeader(ctx); err != nil {
		t.Fatalf("WaitLeader: %v", err)
	}
	return n
}

var serialCounter struct {
	sync.Mutex
	n int
}

func testRecord(agent string) *record.Record {
	serialCounter.Lock()
	serialCounter.n++
	i := serialCounter.n
	serialCounter.Unlock()
	nb := time.Date(2030, 1, 2, 3, 0, 0, 123456789, time.UTC)
	return &record.Record{
		Serial:          fmt.Sprintf("%x", 0x1000+i),
		SPIFFEID:        "spiffe://example.org/workload/" + agent,
		AgentID:         "spiffe://example.org/tier0/agent/" + agent,
		NotBefore:       nb,
		NotAfter:        nb.Add(30 * time.Minute),
		IssuerKeyID:     "abcd",
		PublicKeySHA256: hex.EncodeToString(make([]byte, 32)),
		NodeID:          "n1",
		CertDER:         []byte(fmt.Sprintf("cert-%d", i)),
	}
}

// verifyChain checks that recs are consecutive from firstSeq and chain from prev.
func verifyChain(t testing.TB, recs []*record.Record, firstSeq uint64, prev []byte) []byte {
	t.Helper()
	for i, r := range recs {
		if want := firstSeq + uint64(i); r.Seq != want {
			t.Fatalf("record %d: seq %d, want %d", i, r.Seq, want)
		}
		if err := r.Verify(prev); err != nil {
			t.Fatalf("verify: %v", err)
		}
		prev = r.Hash
	}
	return prev
}

func tokenHash(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// waitFor polls cond until it is true or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// certCount is how many certificate records (not admin events, events.go)
// n's journal holds; the tests that use it export nothing.
func certCount(n *Node) uint64 {
	var c uint64
	for _, r := range n.Tail(0, 1<<30) {
		if !r.IsEvent() {
			c++
		}
	}
	return c
}
