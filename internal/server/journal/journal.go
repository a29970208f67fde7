// Package journal is the node's ca.Journal with the journal-full policy
// (--max-unexported, --on-journal-full; docs/AUDIT.md): when more issued
// records wait for export to the record store than the limit, the node
// either keeps issuing and alerts (keep-issuing: raft state and snapshots
// grow) or refuses to issue (fail-closed: mint answers Unavailable) until
// the export catches up.
package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/ha"
)

// ErrFull is returned by Commit under FailClosed while the journal is full
// (with ha.ErrUnavailable, which api answers as Unavailable).
var ErrFull = errors.New("journal full")

// Node is the raft journal (implemented by *ha.Node).
type Node interface {
	Commit(ctx context.Context, recs []*record.Record) error
	JournalStatus() ha.JournalStatus
}

// Config configures a Bounded journal.
type Config struct {
	Node          Node
	MaxUnexported int           // records waiting for export above which the journal is full; 0: no limit
	FailClosed    bool          // refuse to issue while full (default: keep issuing)
	Interval      time.Duration // how often Run looks at the backlog; default 200ms
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
}

// Bounded is Node's journal with the journal-full policy.
type Bounded struct {
	cfg         Config
	full        atomic.Bool
	fullG       prometheus.Gauge
	limitG      prometheus.Gauge
	lastLogFull time.Time
}

var _ ca.Journal = (*Bounded)(nil)

// New validates cfg and registers the metrics.
func New(cfg Config) (*Bounded, error) {
	if cfg.Node == nil {
		return nil, errors.New("journal: Node is required")
	}
	if cfg.MaxUnexported < 0 {
		return nil, fmt.Errorf("--max-unexported %d: must be 0 (no limit) or positive", cfg.MaxUnexported)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 200 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	b := &Bounded{cfg: cfg,
		fullG: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tier0_journal_full",
			Help: "1 while unexported records exceed --max-unexported."}),
		limitG: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tier0_journal_unexported_limit",
			Help: "The --max-unexported limit (0: none)."}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(b.fullG, b.limitG)
	}
	b.limitG.Set(float64(cfg.MaxUnexported))
	return b, nil
}

// Commit commits recs, or refuses under FailClosed while the journal is full.
func (b *Bounded) Commit(ctx context.Context, recs []*record.Record) error {
	if err := b.refuseIfFull(); err != nil {
		return err
	}
	return b.cfg.Node.Commit(ctx, recs)
}

func (b *Bounded) refuseIfFull() error {
	if b.cfg.FailClosed && b.full.Load() {
		return fmt.Errorf("%w: %w: more than %d issued records wait for export to the record store (is it down?); "+
			"refusing to issue because --on-journal-full=fail-closed", ha.ErrUnavailable, ErrFull, b.cfg.MaxUnexported)
	}
	return nil
}

// Full reports whether the backlog was at or above the limit when Run last
// looked.
func (b *Bounded) Full() bool { return b.full.Load() }

// Run follows the export backlog until ctx ends, with a metric and a loud
// log line on each change (and every minute while full).
func (b *Bounded) Run(ctx context.Context) error {
	t := time.NewTicker(b.cfg.Interval)
	defer t.Stop()
	for {
		b.check()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (b *Bounded) check() {
	un := b.cfg.Node.JournalStatus().Unexported
	isFull := b.cfg.MaxUnexported > 0 && un >= b.cfg.MaxUnexported
	was := b.full.Swap(isFull)
	switch {
	case isFull && (!was || time.Since(b.lastLogFull) > time.Minute):
		b.fullG.Set(1)
		b.lastLogFull = time.Now()
		effect, policy := "still issuing; raft state and snapshots grow", "keep-issuing"
		if b.cfg.FailClosed {
			effect, policy = "mint refused (Unavailable)", "fail-closed"
		}
		b.cfg.Logger.Error("JOURNAL FULL: issued records are not reaching the record store", "unexported", un,
			"max_unexported", b.cfg.MaxUnexported, "on_journal_full", policy, "effect", effect)
	case !isFull && was:
		b.fullG.Set(0)
		b.cfg.Logger.Info("journal no longer full: export caught up", "unexported", un)
	}
}
