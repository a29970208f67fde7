// Package ratelog keeps per-item failure logs readable under an outage:
// for each key (a kind of line, e.g. "svid denied") it writes one line
// when the state (a small class of the cause, e.g. "permission denied")
// changes, and while the state stays the same at most one line per
// interval carrying the count of lines held back since the last one. A
// flood of 40,000 identical failures in 25 s becomes a few lines, and no
// state change is ever hidden.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultEvery is the interval between repeated lines of one state.
const DefaultEvery = 10 * time.Second

// maxKeys bounds the keys remembered: keys are meant to be a fixed set of
// line kinds; past it, lines of new keys are written unlimited.
const maxKeys = 256

// Logger writes rate-limited lines to an slog.Logger. The zero value is
// not usable: use New. It is safe for concurrent use.
type Logger struct {
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	keys map[string]*keyState
}

type keyState struct {
	state string
	last  time.Time // when the last line for this key was written
	held  int64     // lines held back since then
}

// New returns a Logger writing to log (slog.Default() when nil), at most
// once per every (DefaultEvery when <= 0) per key while its state stays
// the same.
func New(log *slog.Logger, every time.Duration) *Logger {
	if log == nil {
		log = slog.Default()
	}
	if every <= 0 {
		every = DefaultEvery
	}
	return &Logger{log: log, every: every, now: time.Now, keys: map[string]*keyState{}}
}

// Log writes msg with attrs for key in state, or counts it if a line of
// key in the same state was written less than every ago. A written line
// carries "held_back" (lines of key not written since the previous line)
// when any were, and "previous_state" when the state changed.
func (l *Logger) Log(ctx context.Context, level slog.Level, key, state, msg string, attrs ...slog.Attr) {
	if !l.log.Enabled(ctx, level) {
		return
	}
	now := l.now()
	l.mu.Lock()
	k := l.keys[key]
	if k == nil && len(l.keys) < maxKeys {
		k = &keyState{}
		l.keys[key] = k
	}
	var held int64
	var prev string
	switch {
	case k == nil:
	case k.state == state && !k.last.IsZero() && now.Sub(k.last) < l.every:
		k.held++
		l.mu.Unlock()
		return
	default:
		held, prev = k.held, k.state
		k.state, k.last, k.held = state, now, 0
	}
	l.mu.Unlock()
	if held > 0 {
		attrs = append(attrs, slog.Int64("held_back", held))
	}
	if prev != "" && prev != state {
		attrs = append(attrs, slog.String("previous_state", prev))
	}
	l.log.LogAttrs(ctx, level, msg, attrs...)
}
