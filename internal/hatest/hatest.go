// Package hatest starts real single-node ha.Nodes (in-memory transport,
// raft-wal in a temporary dir, short raft timeouts) and makes journal
// records for the unit tests of the packages that wire a node together
// (internal/server and below, backup files, restore).
package hatest

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
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

var serial atomic.Int64

// Records returns n well-formed issuance records of agent a1 for
// spiffe://example.org/w, each with a serial unique in the process.
func Records(n int) []*record.Record {
	nb := time.Now().UTC().Truncate(time.Second)
	out := make([]*record.Record, 0, n)
	for range n {
		s := serial.Add(1)
		out = append(out, &record.Record{Serial: fmt.Sprintf("%x", 0x1000+s), SPIFFEID: "spiffe://example.org/w",
			AgentID: "spiffe://example.org/tier0/agent/a1", NotBefore: nb, NotAfter: nb.Add(30 * time.Minute), IssuerKeyID: "abcd",
			PublicKeySHA256: hex.EncodeToString(make([]byte, 32)), NodeID: "n1", CertDER: []byte(fmt.Sprint("der-", s))})
	}
	return out
}

// Populated is Node holding a trust bundle of example.org (one fake root),
// entry e1 (agent a1 may get spiffe://example.org/w) and n records.
func Populated(tb testing.TB, n int) *ha.Node {
	tb.Helper()
	node := Node(tb)
	ctx := context.Background()
	if err := node.SetBundle(ctx, [][]byte{[]byte("root-der")}, "example.org"); err != nil {
		tb.Fatalf("hatest: %v", err)
	}
	if _, err := node.CreateEntry(ctx, ha.Entry{ID: "e1", Agent: "a1", SPIFFEID: "spiffe://example.org/w", TTL: 30 * time.Minute}); err != nil {
		tb.Fatalf("hatest: %v", err)
	}
	if err := node.Commit(ctx, Records(n)); err != nil {
		tb.Fatalf("hatest: %v", err)
	}
	return node
}
