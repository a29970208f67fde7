package ha

import (
	"fmt"
	"sync/atomic"

	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
)

// logStore is raft-wal as raft's LogStore and StableStore, with two
// changes:
//
//   - GetLog refuses indexes below FirstIndex. raft-wal truncates the head
//     logically (FirstIndex moves) but only deletes whole sealed segments,
//     and it reads the unsealed tail segment (64 MiB) without checking the
//     new first index, so after a compaction the leader kept serving
//     "deleted" entries and a follower behind --raft-trailing-logs caught
//     up from the log instead of a snapshot. With this check compaction
//     means what raft's contract says (DeleteRange'd entries are gone): the
//     leader sends such a follower an InstallSnapshot.
//   - it keeps the tier0_raft_log_{first,last}_index gauges current.
type logStore struct {
	*raftwal.WAL
	m     *metrics
	first atomic.Uint64 // last FirstIndex seen; 0: empty log
}

func newLogStore(w *raftwal.WAL, m *metrics) (*logStore, error) {
	s := &logStore{WAL: w, m: m}
	if err := s.updateFirst(); err != nil {
		return nil, err
	}
	last, err := w.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("ha: wal: last index: %w", err)
	}
	m.logLastIndex.Set(float64(last))
	return s, nil
}

// GetLog implements raft.LogStore.
func (s *logStore) GetLog(index uint64, l *raft.Log) error {
	first, err := s.WAL.FirstIndex()
	if err != nil {
		return err
	}
	if index < first {
		return raft.ErrLogNotFound // raft compares with ==: do not wrap
	}
	return s.WAL.GetLog(index, l)
}

// StoreLog implements raft.LogStore.
func (s *logStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs implements raft.LogStore.
func (s *logStore) StoreLogs(logs []*raft.Log) error {
	if err := s.WAL.StoreLogs(logs); err != nil {
		return err
	}
	if n := len(logs); n > 0 {
		s.m.logLastIndex.Set(float64(logs[n-1].Index))
	}
	if s.first.Load() == 0 {
		// The first append to an empty log (new node, or after a
		// snapshot install deleted everything) sets the first index.
		return s.updateFirst()
	}
	return nil
}

// DeleteRange implements raft.LogStore.
func (s *logStore) DeleteRange(min, max uint64) error {
	if err := s.WAL.DeleteRange(min, max); err != nil {
		return err
	}
	if err := s.updateFirst(); err != nil {
		return err
	}
	last, err := s.WAL.LastIndex()
	if err != nil {
		return fmt.Errorf("ha: wal: last index: %w", err)
	}
	s.m.logLastIndex.Set(float64(last))
	return nil
}

func (s *logStore) updateFirst() error {
	first, err := s.WAL.FirstIndex()
	if err != nil {
		return fmt.Errorf("ha: wal: first index: %w", err)
	}
	s.first.Store(first)
	s.m.logFirstIndex.Set(float64(first))
	return nil
}
