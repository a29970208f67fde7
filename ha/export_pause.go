package ha

import (
	"context"
	"errors"
	"time"

	"github.com/tier0-ca/tier0/internal/backoff"
)

// pausedExport is the exporter's view of a fault in this node's own
// journal: the divergence latch (ErrDiverged) or failing log writes
// (ErrJournalWrite). Neither is the record store's fault and neither ends
// the exporter: it waits with backoff and retries (a write fault clears
// by itself, a divergence when the node is repaired), logging once when
// the pause starts and once when export resumes. Health already reports
// the cause and issuance is refused meanwhile.
type pausedExport struct {
	since time.Time // zero while not paused
}

// pause reports whether err is such a fault, logging the pause's start.
func (p *pausedExport) pause(n *Node, err error) bool {
	if !errors.Is(err, ErrDiverged) && !errors.Is(err, ErrJournalWrite) {
		return false
	}
	if p.since.IsZero() {
		p.since = time.Now()
		n.log.Warn("ha: export paused: this node's journal cannot be written (not a record store fault); retrying with backoff",
			"err", err, "unexported", n.JournalStatus().Unexported)
	}
	return true
}

// resumed logs the end of a pause.
func (p *pausedExport) resumed(n *Node) {
	if !p.since.IsZero() {
		n.log.Info("ha: export resumed after a journal fault", "paused_for", time.Since(p.since).Round(time.Millisecond))
		p.since = time.Time{}
	}
}

// sleepCtx waits d or until ctx ends (its error); export.go's loop names
// its delay "backoff", hence this name for the shared helper.
func sleepCtx(ctx context.Context, d time.Duration) error { return backoff.Sleep(ctx, d) }
