package ha

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
)

// Sink is the record store as the exporter sees it (storage.Store).
type Sink interface {
	// LastSeq returns the highest Seq stored; in an empty store, the base
	// seq of the lineage that claimed it, else 0.
	LastSeq(ctx context.Context) (uint64, error)
	// Append stores recs (consecutive, in journal order). It must be
	// idempotent by Seq: records already stored are skipped.
	Append(ctx context.Context, recs []*record.Record) error
	// Range calls fn with the stored records from..to in seq order.
	Range(ctx context.Context, from, to uint64, fn func(*record.Record) error) error
	// Lineage returns the lineage that claimed the store (ok false: none).
	Lineage(ctx context.Context) (l record.Lineage, ok bool, err error)
	// ClaimLineage claims an unclaimed store atomically and returns the
	// store's lineage after the call (the first claim wins).
	ClaimLineage(ctx context.Context, l record.Lineage, by string, at time.Time) (record.Lineage, error)
}

const (
	exportBatch = 5000
	// exportLinger is how long the exporter lets a short tail grow before
	// appending it: under load each store transaction (and each "exported"
	// raft entry, an fsync) then carries many journal entries instead of
	// one per call. Issuance never waits for export.
	exportLinger     = 20 * time.Millisecond
	exportBackoffMin = 100 * time.Millisecond
	exportBackoffMax = 5 * time.Second
)

// errLostLeadership ends one leader term of the exporter without counting
// as a sink error.
var errLostLeadership = errors.New("ha: export: not the leader")

// RunExporter copies the journal to sink, in order and exactly once, until
// ctx ends (it then returns ctx.Err()). It works only while this node is the
// leader and waits otherwise. At the start of each leader term it checks
// that the store continues this journal's chain (checkStore) and claims an
// unclaimed one. After each Append it commits an "exported up to seq N"
// command so that state and snapshots drop those records. Sink errors are
// logged and retried with backoff; issuance is not affected. A store that
// does not continue the chain is refused for good: RunExporter latches the
// refusal (ExportHealth, tier0_export_refused, issuance stops), logs it
// once and returns it (wrapping ErrStoreMismatch).
func (n *Node) RunExporter(ctx context.Context, sink Sink) error {
	if err := n.ExportHealth(); err != nil {
		return err
	}
	n.idemSink.Store(&sink)
	backoff := exportBackoffMin
	var failingSince time.Time // zero while the sink works
	var paused pausedExport    // this node's journal cannot be written (export_pause.go)
	for {
		if err := n.waitLeadership(ctx); err != nil {
			return err
		}
		err := n.exportTerm(ctx, sink, func() {
			paused.resumed(n)
			backoff = exportBackoffMin
			if !failingSince.IsZero() {
				n.log.Info("ha: record store reachable again: export resumed", "delayed_for", time.Since(failingSince).Round(time.Millisecond))
				failingSince = time.Time{}
			}
		})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil || errors.Is(err, errLostLeadership) {
			continue
		}
		if paused.pause(n, err) {
			if err := sleepCtx(ctx, backoff); err != nil {
				return err
			}
			backoff = min(2*backoff, exportBackoffMax)
			continue
		}
		if errors.Is(err, ErrStoreMismatch) {
			n.health.refuse(err)
			n.m.exportRefused.Set(1)
			// Another voter may have a store that continues the journal:
			// let it lead (this node no longer can); alone, this fails.
			transfer := n.raft.LeadershipTransfer().Error()
			n.log.Error("ha: RECORD STORE REFUSED: export and issuance stopped", "err", err,
				"unexported", n.JournalStatus().Unexported, "leadership_handed_over", transfer == nil)
			return err
		}
		n.m.exportErrors.Inc()
		if failingSince.IsZero() {
			failingSince = time.Now()
			n.log.Error("ha: RECORD STORE UNAVAILABLE: export delayed, issuance continues (records wait in the journal; see tier0_export_lag_records)",
				"err", err, "unexported", n.JournalStatus().Unexported)
		}
		n.log.Warn("ha: export failed, retrying", "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, exportBackoffMax)
	}
}

// waitLeadership returns when this node is the leader and has applied every
// earlier entry (so Tail and ExportedSeq are current).
func (n *Node) waitLeadership(ctx context.Context) error {
	for {
		changed := n.leadershipChange()
		if n.isLeader() {
			if err := n.raft.Barrier(n.cfg.ApplyTimeout).Error(); err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.closing:
			return fmt.Errorf("ha: export: %w: node closed", ErrUnavailable)
		case <-changed:
		case <-time.After(time.Second): // recheck (e.g. a failed barrier)
		}
	}
}

// exportTerm exports while this node stays leader. It returns
// errLostLeadership when leadership ends, or the first error.
func (n *Node) exportTerm(ctx context.Context, sink Sink, ok func()) error {
	term := n.raft.CurrentTerm()
	cctx, cancel := context.WithTimeout(ctx, exportCheckTimeout)
	last, err := n.checkStore(cctx, sink)
	cancel()
	if err != nil {
		if !errors.Is(err, ErrStoreMismatch) && !errors.Is(err, errLostLeadership) {
			// The store cannot be read: issuance goes on (records wait in
			// the journal) and the check runs again at the next attempt.
			n.health.checked(term)
		}
		return err
	}
	n.health.checked(term)
	if last > n.JournalStatus().ExportedSeq {
		// Appended before a crash but not yet marked exported.
		if err := n.markExported(ctx, last); err != nil {
			return err
		}
	}
	for {
		changed := n.leadershipChange()
		if !n.isLeader() {
			return errLostLeadership
		}
		more := n.fsm.recordsNotify()
		recs := n.Tail(last, exportBatch)
		if len(recs) == 0 {
			if err := n.exportCheckpoints(ctx, sink, last); err != nil { // checkpoint.go
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-n.closing:
				return fmt.Errorf("ha: export: %w: node closed", ErrUnavailable)
			case <-changed:
			case <-more:
			}
			continue
		}
		if len(recs) < exportBatch {
			t := time.NewTimer(exportLinger)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			recs = n.Tail(last, exportBatch)
		}
		if err := sink.Append(ctx, recs); err != nil {
			return fmt.Errorf("ha: export: append seq %d..%d: %w", recs[0].Seq, recs[len(recs)-1].Seq, err)
		}
		last = recs[len(recs)-1].Seq
		if err := n.exportCheckpoints(ctx, sink, last); err != nil {
			return err
		}
		if err := n.markExported(ctx, last); err != nil {
			return err
		}
		ok()
	}
}

// markExported commits "records <= seq are in the store" and counts the
// newly exported records.
func (n *Node) markExported(ctx context.Context, seq uint64) error {
	defer n.exportGate()()
	prev := n.JournalStatus().ExportedSeq
	_, err := n.apply(ctx, "export", cmdExported, exportedCmd{Seq: seq})
	if errors.Is(err, ErrNotLeader) {
		return errLostLeadership
	}
	if err != nil {
		return err
	}
	if seq > prev {
		n.m.exportedRecords.Add(float64(seq - prev))
	}
	return nil
}
