package ha

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	commitSeconds   prometheus.Histogram
	batchRecords    prometheus.Histogram
	journalSeq      prometheus.Gauge
	exportLag       prometheus.Gauge
	exportErrors    prometheus.Counter
	exportedRecords prometheus.Counter
	exportRefused   prometheus.Gauge
	journalEntries  prometheus.Counter
	forwards        prometheus.Counter
	forwardErrors   prometheus.Counter
	reroutes        prometheus.Counter // transfer.go
	snapsInstalled  prometheus.Counter
	logFirstIndex   prometheus.Gauge
	logLastIndex    prometheus.Gauge

	diverged            prometheus.Gauge
	divergedSkipped     prometheus.Counter
	journalWriteErrors  prometheus.Counter
	journalWriteFailing prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tier0_journal_commit_seconds",
			Help:    "Latency of Journal.Commit (queueing, raft commit and apply).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		batchRecords: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tier0_journal_batch_records",
			Help:    "Records per raft entry (group commit batch size).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		journalSeq: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tier0_journal_seq",
			Help: "Sequence number of the last record applied on this node.",
		}),
		exportLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tier0_export_lag_records",
			Help: "Committed records not yet exported to the record store.",
		}),
		exportErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tier0_export_errors_total",
			Help: "Failed record store calls (LastSeq or Append) by the exporter.",
		}),
		exportedRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tier0_exported_records_total",
			Help: "Records confirmed in the record store and marked exported by this node's exporter.",
		}),
		exportRefused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tier0_export_refused",
			Help: "1 while this node refuses to export to its record store and to issue, because the store does not continue this journal's chain (another cluster's or lineage's store; see /readyz and the log), else 0.",
		}),
		journalEntries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tier0_journal_raft_entries_total",
			Help: "Raft entries written by this node's journal committer (one per group commit batch).",
		}),
		forwards: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tier0_forwards_total",
			Help: "Writes (record batches, admin commands) this follower sent to the leader.",
		}),
		forwardErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tier0_forward_errors_total",
			Help: "Forwarded writes that failed (the caller got Unavailable).",
		}),
		reroutes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tier0_commit_reroutes_total",
			Help: "Record batches sent on to a new leader because leadership moved before they were proposed.",
		}),
		snapsInstalled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tier0_raft_snapshots_installed_total",
			Help: "Snapshots installed into the running FSM: sent by the leader to a follower behind its log (InstallSnapshot), or a backup restore; not the local snapshot loaded at startup.",
		}),
		logFirstIndex: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tier0_raft_log_first_index",
			Help: "First index in this node's raft log (moves at log compaction; 0: empty).",
		}),
		logLastIndex: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tier0_raft_log_last_index",
			Help: "Last index in this node's raft log.",
		}),
		diverged: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tier0_raft_diverged",
			Help: "1 while this node is latched diverged: it met a committed raft entry it cannot apply, applies nothing after it and refuses writes (see /readyz and the log for the index).",
		}),
		divergedSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tier0_raft_diverged_skipped_entries_total",
			Help: "Committed raft entries not applied because this node is latched diverged.",
		}),
		journalWriteErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tier0_journal_write_errors_total",
			Help: "Failed writes to the raft log or stable store (no space, I/O or fsync errors).",
		}),
		journalWriteFailing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tier0_journal_write_failing",
			Help: "1 while the last raft log write failed (writes answer Unavailable and the node is not ready); 0 once a write succeeds.",
		}),
	}
	if reg == nil {
		return m
	}
	m.commitSeconds = register(reg, m.commitSeconds)
	m.batchRecords = register(reg, m.batchRecords)
	m.journalSeq = register(reg, m.journalSeq)
	m.exportLag = register(reg, m.exportLag)
	m.exportErrors = register(reg, m.exportErrors)
	m.exportedRecords = register(reg, m.exportedRecords)
	m.exportRefused = register(reg, m.exportRefused)
	m.journalEntries = register(reg, m.journalEntries)
	m.forwards = register(reg, m.forwards)
	m.forwardErrors = register(reg, m.forwardErrors)
	m.reroutes = register(reg, m.reroutes)
	m.snapsInstalled = register(reg, m.snapsInstalled)
	m.logFirstIndex = register(reg, m.logFirstIndex)
	m.logLastIndex = register(reg, m.logLastIndex)
	m.diverged = register(reg, m.diverged)
	m.divergedSkipped = register(reg, m.divergedSkipped)
	m.journalWriteErrors = register(reg, m.journalWriteErrors)
	m.journalWriteFailing = register(reg, m.journalWriteFailing)
	return m
}

// register registers c, or returns the collector already registered under
// the same name (a node reopened in the same process).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		// A different collector owns the name: keep ours unregistered
		// rather than fail the node.
	}
	return c
}
