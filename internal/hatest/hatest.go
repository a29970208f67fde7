// Package hatest starts real single-node ha.Nodes (in-memory transport,
// raft-wal in a temporary dir, short raft timeouts) for the unit tests of
// the packages that wire a node together (internal/server and below).
package hatest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ha"
)

// Fast sets raft timeouts short enough for a single node to elect itself
// in tens of milliseconds.
func Fast(c *ha.Config) {
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 100*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
}

// Node starts a bootstrapped single node in a temporary dir, waits until
// it leads and closes it when the test ends. mod adjusts the config.
func Node(tb testing.TB, mod ...func(*ha.Config)) *ha.Node {
	tb.Helper()
	cfg := ha.Config{NodeID: "n1", DataDir: tb.TempDir(), Bootstrap: true, Logger: slog.New(slog.DiscardHandler)}
	Fast(&cfg)
	for _, m := range mod {
		m(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := ha.New(ctx, cfg)
	if err != nil {
		tb.Fatalf("hatest: %v", err)
	}
	tb.Cleanup(func() { _ = n.Close() })
	if err := n.WaitLeader(ctx); err != nil {
		tb.Fatalf("hatest: %v", err)
	}
	return n
}
