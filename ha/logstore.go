package ha

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	waltypes "github.com/hashicorp/raft-wal/types"
)

// walStore is what the node uses of raft-wal: raft's LogStore and
// StableStore (an interface so that tests can inject write faults).
type walStore interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

const (
	// reopenEvery bounds how often a stuck WAL is reopened.
	reopenEvery = time.Second
	// faultHold is how long writes must succeed, without a failure, before
	// a write fault is over (readiness, the gauge): on a disk with a few
	// pages left small writes succeed and batches fail, and readiness
	// should not flap with them.
	faultHold = 5 * time.Second
)

// logStore is raft-wal as raft's LogStore and StableStore, with three
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
//   - Write faults are tracked (DESIGN.md "Storage faults"): a failed
//     StoreLogs starts a fault that Node.Health reports and that writes
//     answer (ErrJournalWrite, with the cause) instead of the "not the
//     leader" raft gives once the leader has stepped down. The fault ends
//     when writes have succeeded for faultHold with no failure. raft-wal v0.4 never retries a segment
//     rotation that failed (no space for the next preallocated segment):
//     every later append fails with "segment is sealed", even once space
//     is back. The store then reopens the WAL (at most once a second),
//     which recovers the new tail segment, and retries the write, so
//     writes resume by themselves and the error names the real cause.
//   - it keeps the tier0_raft_log_{first,last}_index gauges current.
type logStore struct {
	open func() (walStore, error)
	m    *metrics
	log  *slog.Logger

	mu    sync.RWMutex // held (read) while w is in use; (write) to swap it
	w     walStore
	first atomic.Uint64 // last FirstIndex seen; 0: empty log

	faultMu    sync.Mutex
	faultErr   error     // cause of the last failed write; nil: no fault
	failing    bool      // the last write failed
	lastFail   time.Time // when
	faultSince time.Time // first failure of this fault
	faultLog   time.Time // last time the fault was logged
	faults     int       // failed writes since faultSince
	hold       time.Duration
	now        func() time.Time // time.Now; tests set a clock
	lastReopen time.Time
	reopenErr  error         // of the last reopen
	reopenGap  time.Duration // at least this long between reopens (reopenEvery)
}

func newLogStore(open func() (walStore, error), m *metrics, log *slog.Logger) (*logStore, error) {
	w, err := open()
	if err != nil {
		return nil, err
	}
	s := &logStore{open: open, m: m, log: log, w: w, reopenGap: reopenEvery, hold: faultHold, now: time.Now}
	if err := s.updateFirst(); err != nil {
		_ = w.Close()
		return nil, err
	}
	last, err := w.LastIndex()
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("ha: wal: last index: %w", err)
	}
	m.logLastIndex.Set(float64(last))
	m.journalWriteFailing.Set(0)
	return s, nil
}

// use runs fn with the current WAL, which a reopen cannot close meanwhile.
func (s *logStore) use(fn func(w walStore) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return fn(s.w)
}

// FirstIndex implements raft.LogStore.
func (s *logStore) FirstIndex() (i uint64, err error) {
	err = s.use(func(w walStore) (err error) { i, err = w.FirstIndex(); return })
	return i, err
}

// LastIndex implements raft.LogStore.
func (s *logStore) LastIndex() (i uint64, err error) {
	err = s.use(func(w walStore) (err error) { i, err = w.LastIndex(); return })
	return i, err
}

// GetLog implements raft.LogStore.
func (s *logStore) GetLog(index uint64, l *raft.Log) error {
	return s.use(func(w walStore) error {
		first, err := w.FirstIndex()
		if err != nil {
			return err
		}
		if index < first {
			return raft.ErrLogNotFound // raft compares with ==: do not wrap
		}
		return w.GetLog(index, l)
	})
}

// StoreLog implements raft.LogStore.
func (s *logStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs implements raft.LogStore.
func (s *logStore) StoreLogs(logs []*raft.Log) error {
	store := func(w walStore) error { return w.StoreLogs(logs) }
	err := s.use(store)
	if errors.Is(err, waltypes.ErrSealed) {
		if rerr := s.reopen(); rerr != nil {
			err = rerr
		} else {
			err = s.use(store)
		}
	}
	if err != nil {
		return s.failed(err)
	}
	s.recovered()
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

// reopen replaces a WAL whose tail is stuck sealed by a freshly opened one
// (raft-wal recovers or creates the tail segment on open).
func (s *logStore) reopen() error {
	s.faultMu.Lock()
	wait := time.Until(s.lastReopen.Add(s.reopenGap))
	last := s.reopenErr
	if wait <= 0 {
		s.lastReopen = time.Now()
	}
	s.faultMu.Unlock()
	if wait > 0 {
		if last != nil {
			return last
		}
		return errors.New("raft-wal could not open its next segment (see the wal \"rotate error\"); reopening it again shortly")
	}
	fresh, err := s.open()
	if err != nil {
		err = fmt.Errorf("reopening the wal after a failed segment rotation: %w", err)
	}
	s.faultMu.Lock()
	s.reopenErr = err
	s.faultMu.Unlock()
	if err != nil {
		return err
	}
	s.mu.Lock()
	old := s.w
	s.w = fresh
	s.mu.Unlock()
	s.log.Warn("ha: wal reopened after a failed segment rotation")
	if err := old.Close(); err != nil {
		s.log.Warn("ha: closing the stuck wal", "err", err)
	}
	return nil
}

// failed records a failed write and returns it as a journalWriteError.
func (s *logStore) failed(err error) error {
	s.m.journalWriteErrors.Inc()
	s.m.journalWriteFailing.Set(1)
	s.faultMu.Lock()
	now := s.now()
	first := s.faultErr == nil
	if first {
		s.faultSince, s.faults = now, 0
	}
	s.faultErr, s.failing, s.lastFail = err, true, now
	s.faults++
	remind := !first && now.Sub(s.faultLog) >= time.Minute
	if first || remind {
		s.faultLog = now
	}
	count, since := s.faults, s.faultSince
	s.faultMu.Unlock()
	switch {
	case first:
		s.log.Error("ha: JOURNAL WRITE FAILED: writes answer Unavailable and this node is not ready until the raft log can be written again; they resume by themselves",
			"err", err)
	case remind:
		s.log.Warn("ha: journal writes still failing", "err", err, "failed_writes", count, "since", since.Format(time.RFC3339))
	}
	return &journalWriteError{cause: err}
}

// recovered notes a successful write; the fault ends faultHold after it
// unless another write fails meanwhile.
func (s *logStore) recovered() {
	s.faultMu.Lock()
	wasFailing := s.failing
	s.failing = false
	hold := s.hold
	s.faultMu.Unlock()
	if wasFailing {
		time.AfterFunc(hold, func() { _ = s.fault() })
	}
}

// fault returns the write fault (a journalWriteError) until writes have
// succeeded for the hold time, or nil; it ends the fault (gauge, log) once
// the hold time has passed.
func (s *logStore) fault() error {
	s.faultMu.Lock()
	if s.faultErr == nil {
		s.faultMu.Unlock()
		return nil
	}
	if s.failing || s.now().Sub(s.lastFail) < s.hold {
		defer s.faultMu.Unlock()
		return &journalWriteError{cause: s.faultErr}
	}
	was, since, last, count := s.faultErr, s.faultSince, s.lastFail, s.faults
	s.faultErr = nil
	s.faultMu.Unlock()
	s.m.journalWriteFailing.Set(0)
	s.log.Info("ha: journal writes work again", "failed_for", last.Sub(since).Round(time.Millisecond), "failed_writes", count, "last_err", was)
	return nil
}

// DeleteRange implements raft.LogStore. A failure (compaction) leaves the
// log longer than needed; it is counted but is not a write fault.
func (s *logStore) DeleteRange(min, max uint64) error {
	if err := s.use(func(w walStore) error { return w.DeleteRange(min, max) }); err != nil {
		s.m.journalWriteErrors.Inc()
		return err
	}
	if err := s.updateFirst(); err != nil {
		return err
	}
	last, err := s.LastIndex()
	if err != nil {
		return fmt.Errorf("ha: wal: last index: %w", err)
	}
	s.m.logLastIndex.Set(float64(last))
	return nil
}

// Set implements raft.StableStore.
func (s *logStore) Set(key, val []byte) error {
	return s.stable(func(w walStore) error { return w.Set(key, val) })
}

// SetUint64 implements raft.StableStore. (raft panics when it cannot
// persist its term: the process exits, which is the only honest answer.)
func (s *logStore) SetUint64(key []byte, val uint64) error {
	return s.stable(func(w walStore) error { return w.SetUint64(key, val) })
}

// Get implements raft.StableStore.
func (s *logStore) Get(key []byte) (v []byte, err error) {
	err = s.use(func(w walStore) (err error) { v, err = w.Get(key); return })
	return v, err
}

// GetUint64 implements raft.StableStore.
func (s *logStore) GetUint64(key []byte) (v uint64, err error) {
	err = s.use(func(w walStore) (err error) { v, err = w.GetUint64(key); return })
	return v, err
}

// stable runs a stable store write; a failure is a write fault (only a
// log write clears it).
func (s *logStore) stable(fn func(w walStore) error) error {
	if err := s.use(fn); err != nil {
		return s.failed(fmt.Errorf("stable store: %w", err))
	}
	return nil
}

// IsMonotonic implements raft.MonotonicLogStore, as raft-wal does: after a
// user restore raft deletes the old log instead of leaving a gap.
func (s *logStore) IsMonotonic() bool { return true }

var _ raft.MonotonicLogStore = (*logStore)(nil)

// Close closes the WAL (not its meta store, which the node owns).
func (s *logStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Close()
}

func (s *logStore) updateFirst() error {
	first, err := s.FirstIndex()
	if err != nil {
		return fmt.Errorf("ha: wal: first index: %w", err)
	}
	s.first.Store(first)
	s.m.logFirstIndex.Set(float64(first))
	return nil
}
