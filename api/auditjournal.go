package api

import (
	"context"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
)

// JournalViewer tells what the journal knows about the end of the chain
// (implemented by ha.Node). When Config.Checkpoints is one, VerifyChain
// compares the end of the store with it (storage.CompareJournal).
type JournalViewer interface {
	JournalView() record.JournalView
}

// journalCatchUp bounds how long VerifyChain waits for this node's journal
// to apply records the leader already exported (a follower lags by the
// entries in flight) before calling a stored record beyond its head forged.
const journalCatchUp = 3 * time.Second

// compareJournal reports, in res, a stored record the journal does not hold
// (a forged tail) or records removed at the end, unless res has a problem
// at a lower seq. It looks at the end of the store whatever range was
// verified: a forged tail is a problem of the store, not of a range.
func (s *Server) compareJournal(ctx context.Context, res *storage.AuditResult) error {
	j, ok := s.cfg.Checkpoints.(JournalViewer)
	if !ok || s.cfg.Audit == nil {
		return nil
	}
	view := func(ctx context.Context, atLeast uint64) record.JournalView {
		deadline := time.Now().Add(journalCatchUp)
		for {
			v := j.JournalView()
			if v.Seq() >= atLeast || !time.Now().Before(deadline) || ctx.Err() != nil {
				return v
			}
			t := time.NewTimer(10 * time.Millisecond) // polling the local FSM, not synchronisation
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
	}
	seq, problem, detail, err := storage.CompareJournal(ctx, s.cfg.Audit, view)
	if err != nil {
		return err
	}
	res.Report(seq, problem, detail)
	return nil
}
