package ha

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/prometheus/client_golang/prometheus"
)

// TestLogStoreHidesCompactedEntries: raft-wal still reads entries below
// FirstIndex from its unsealed tail segment after a head truncation; the
// wrapper refuses them (so the leader sends a snapshot) and keeps the
// first/last index gauges.
func TestLogStoreHidesCompactedEntries(t *testing.T) {
	meta := &metadb.BoltMetaDB{}
	wal, err := raftwal.Open(t.TempDir(), raftwal.WithMetaStore(meta))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wal.Close(); _ = meta.Close() })
	m := newMetrics(prometheus.NewRegistry())
	s, err := newLogStore(func() (walStore, error) { return wal, nil }, m, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := uint64(1); i <= 100; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte("x")})
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if f, l := metricValue(t, m.logFirstIndex), metricValue(t, m.logLastIndex); f != 1 || l != 100 {
		t.Fatalf("gauges first %v last %v, want 1, 100", f, l)
	}
	if err := s.DeleteRange(1, 50); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := wal.GetLog(10, &l); err != nil {
		t.Logf("raft-wal now hides truncated tail entries itself (%v); the wrapper is redundant", err)
	}
	if err := s.GetLog(10, &l); !errors.Is(err, raft.ErrLogNotFound) || err != raft.ErrLogNotFound { //nolint:errorlint // raft compares with ==: it must be unwrapped
		t.Fatalf("GetLog(10) after DeleteRange(1, 50) = %v, want raft.ErrLogNotFound (unwrapped)", err)
	}
	if err := s.GetLog(51, &l); err != nil || l.Index != 51 {
		t.Fatalf("GetLog(51) = %v, index %d", err, l.Index)
	}
	if f, l := metricValue(t, m.logFirstIndex), metricValue(t, m.logLastIndex); f != 51 || l != 100 {
		t.Fatalf("gauges first %v last %v, want 51, 100", f, l)
	}
}
