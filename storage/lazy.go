package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
)

// LazyConfig configures OpenLazy.
type LazyConfig struct {
	// Logger receives one line per failed attempt (Error on the first,
	// Warn after) and one when connected; default slog.Default().
	Logger *slog.Logger
	// Describe names the store in log lines and errors (for example a
	// DSN without its password); default "record store".
	Describe string
	// AttemptTimeout bounds each connection attempt; default 15s.
	AttemptTimeout time.Duration
	// BackoffMin and BackoffMax bound the wait between attempts; default
	// 250ms and 5s.
	BackoffMin, BackoffMax time.Duration
}

// Lazy is an AuditStore that connects in the background: until the first
// successful Open (which migrates the schema) every method fails with an
// error wrapping ErrUnavailable and the last connection error; afterwards
// it is the opened store. Safe for concurrent use.
type Lazy struct {
	cfg    LazyConfig
	cancel context.CancelFunc
	done   chan struct{}
	ready  chan struct{} // closed once s is set

	mu      sync.Mutex
	s       AuditStore
	lastErr error
	closed  bool
}

// OpenLazy tries OpenAudit(dsn) once; if that fails it logs the error
// loudly and returns a Lazy that keeps retrying in the background with
// exponential backoff. Errors that retrying cannot fix (an unknown DSN
// scheme, ErrSchemaTooNew) still fail here.
func OpenLazy(ctx context.Context, dsn string, cfg LazyConfig) (*Lazy, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Describe == "" {
		cfg.Describe = "record store"
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = 15 * time.Second
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 250 * time.Millisecond
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = max(5*time.Second, cfg.BackoffMin)
	}
	if !knownScheme(dsn) {
		_, err := Open(ctx, dsn) // fails, with the message that says what is wrong
		return nil, err
	}
	l := &Lazy{cfg: cfg, done: make(chan struct{}), ready: make(chan struct{})}
	err := l.attempt(ctx, dsn)
	switch {
	case err == nil:
		close(l.done)
		return l, nil
	case errors.Is(err, ErrSchemaTooNew):
		return nil, err
	}
	cfg.Logger.Error("RECORD STORE UNREACHABLE AT START: starting anyway (--store-optional); issued records wait in the journal "+
		"and audit queries answer Unavailable until it connects", "store", cfg.Describe, "err", err)
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel = cancel
	go l.connect(bg, dsn)
	return l, nil
}

func knownScheme(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") ||
		strings.HasPrefix(dsn, "sqlite:") || strings.HasSuffix(dsn, ".db")
}

// attempt opens the store once; nil means connected.
func (l *Lazy) attempt(ctx context.Context, dsn string) error {
	actx, cancel := context.WithTimeout(ctx, l.cfg.AttemptTimeout)
	defer cancel()
	s, err := OpenAudit(actx, dsn)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.lastErr = err
		return err
	}
	if l.closed {
		s.Close()
		return fmt.Errorf("storage: %s: closed while connecting", l.cfg.Describe)
	}
	l.s, l.lastErr = s, nil
	close(l.ready)
	return nil
}

func (l *Lazy) connect(ctx context.Context, dsn string) {
	defer close(l.done)
	backoff := l.cfg.BackoffMin
	start := time.Now()
	for attempts := 1; ; attempts++ {
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		err := l.attempt(ctx, dsn)
		if err == nil {
			l.cfg.Logger.Info("record store connected (schema migrated); export resumes", "store", l.cfg.Describe,
				"attempts", attempts+1, "unavailable_for", time.Since(start).Round(time.Millisecond))
			return
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrSchemaTooNew) {
			l.cfg.Logger.Error("record store: refusing to use it: a newer tier0 migrated this database", "store", l.cfg.Describe, "err", err)
		}
		l.cfg.Logger.Warn("record store still unreachable, retrying", "store", l.cfg.Describe, "err", err, "backoff", backoff)
		backoff = min(2*backoff, l.cfg.BackoffMax)
	}
}

// Ready is closed once the store is connected.
func (l *Lazy) Ready() <-chan struct{} { return l.ready }

// store returns the connected store or an error wrapping ErrUnavailable.
func (l *Lazy) store() (AuditStore, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.s != nil {
		return l.s, nil
	}
	if l.closed {
		return nil, fmt.Errorf("%w: %s: closed", ErrUnavailable, l.cfg.Describe)
	}
	return nil, fmt.Errorf("%w: %s: not connected yet: %v", ErrUnavailable, l.cfg.Describe, l.lastErr)
}

// Close stops connecting and closes the store if it was opened.
func (l *Lazy) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	if l.cancel != nil {
		l.cancel()
	}
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.s == nil {
		return nil
	}
	return l.s.Close()
}

// LastSeq implements Store.
func (l *Lazy) LastSeq(ctx context.Context) (uint64, error) {
	s, err := l.store()
	if err != nil {
		return 0, err
	}
	return s.LastSeq(ctx)
}

// Append implements Store.
func (l *Lazy) Append(ctx context.Context, recs []*record.Record) error {
	s, err := l.store()
	if err != nil {
		return err
	}
	return s.Append(ctx, recs)
}

// Query implements Store.
func (l *Lazy) Query(ctx context.Context, f Filter) ([]*record.Record, error) {
	s, err := l.store()
	if err != nil {
		return nil, err
	}
	return s.Query(ctx, f)
}

// Range implements Store.
func (l *Lazy) Range(ctx context.Context, from, to uint64, fn func(*record.Record) error) error {
	s, err := l.store()
	if err != nil {
		return err
	}
	return s.Range(ctx, from, to, fn)
}

// Lineage implements Store.
func (l *Lazy) Lineage(ctx context.Context) (record.Lineage, bool, error) {
	s, err := l.store()
	if err != nil {
		return record.Lineage{}, false, err
	}
	return s.Lineage(ctx)
}

// ClaimLineage implements Store.
func (l *Lazy) ClaimLineage(ctx context.Context, lin record.Lineage, by string, at time.Time) (record.Lineage, error) {
	s, err := l.store()
	if err != nil {
		return record.Lineage{}, err
	}
	return s.ClaimLineage(ctx, lin, by, at)
}

// FirstSeq implements AuditStore.
func (l *Lazy) FirstSeq(ctx context.Context) (uint64, error) {
	s, err := l.store()
	if err != nil {
		return 0, err
	}
	return s.FirstSeq(ctx)
}

// AppendCheckpoints implements AuditStore.
func (l *Lazy) AppendCheckpoints(ctx context.Context, cps []Checkpoint) error {
	s, err := l.store()
	if err != nil {
		return err
	}
	return s.AppendCheckpoints(ctx, cps)
}

// Checkpoints implements AuditStore.
func (l *Lazy) Checkpoints(ctx context.Context, from, to uint64) ([]Checkpoint, error) {
	s, err := l.store()
	if err != nil {
		return nil, err
	}
	return s.Checkpoints(ctx, from, to)
}

// AppendDecisions implements AuditStore.
func (l *Lazy) AppendDecisions(ctx context.Context, ds []Decision) error {
	s, err := l.store()
	if err != nil {
		return err
	}
	return s.AppendDecisions(ctx, ds)
}

// QueryDecisions implements AuditStore.
func (l *Lazy) QueryDecisions(ctx context.Context, f DecisionFilter) ([]Decision, error) {
	s, err := l.store()
	if err != nil {
		return nil, err
	}
	return s.QueryDecisions(ctx, f)
}

// Prune implements AuditStore.
func (l *Lazy) Prune(ctx context.Context, before time.Time) (PruneResult, error) {
	s, err := l.store()
	if err != nil {
		return PruneResult{}, err
	}
	return s.Prune(ctx, before)
}

// SchemaVersion implements AuditStore.
func (l *Lazy) SchemaVersion(ctx context.Context) (db, binary int, err error) {
	s, err := l.store()
	if err != nil {
		return 0, 0, err
	}
	return s.SchemaVersion(ctx)
}

var _ AuditStore = (*Lazy)(nil)
