// Package ha is the tier0 Raft node: it holds the CA state (registration
// entries, join tokens, trust bundle) and the hash-chained issuance journal,
// replicates them with hashicorp/raft over raft-wal, and exports the journal
// to the record store. See DESIGN.md in this directory.
package ha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Config.
const (
	DefaultMaxBatchRecords   = 1024
	DefaultApplyTimeout      = 5 * time.Second
	DefaultSnapshotThreshold = 8192
	DefaultTrailingLogs      = 10240
	DefaultForwardsInFlight  = 16
	DefaultForwardLinger     = 2 * time.Millisecond // what cluster mode uses (Config's zero value: no linger)
	DefaultWALSegmentSize    = 64 << 20             // raft-wal's default
	minWALSegmentSize        = 1 << 20
	maxWALSegmentSize        = 1 << 30
	snapshotRetain           = 2
)

// Config configures a Node.
type Config struct {
	NodeID            string         // required
	DataDir           string         // required; raft-wal in DataDir/raft/wal, snapshots in DataDir/raft/snapshots
	Transport         raft.Transport // nil = single node on an in-memory transport (the embedded default)
	Bootstrap         bool           // bootstrap a single-voter cluster if no state exists
	MaxBatchRecords   int            // max records per raft entry; default 1024
	ApplyTimeout      time.Duration  // default 5s
	SnapshotThreshold uint64         // default 8192
	TrailingLogs      uint64         // default 10240
	Registerer        prometheus.Registerer
	Logger            *slog.Logger
	Clock             func() time.Time // stamps times into commands (leader side only)
	// Forwarder sends a follower's writes to the leader (forward.go); nil:
	// a follower's writes fail with ErrNotLeader.
	Forwarder Forwarder
	// ForwardsInFlight bounds a follower's concurrent record-batch forwards
	// (default 16); ForwardLinger (default 0: none) is how long a follower
	// waits for more records before forwarding a small batch while other
	// forwards are in flight.
	ForwardsInFlight int
	ForwardLinger    time.Duration
	// HeartbeatTimeout, ElectionTimeout and LeaderLeaseTimeout override the
	// raft defaults (1s, 1s, 500ms) when set; see DESIGN.md "Raft tuning".
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	SnapshotInterval   time.Duration // how often raft checks SnapshotThreshold; default 120s
	// ExportCheck makes record commits on the leader wait until this
	// node's exporter (RunExporter) has checked, in the current leader
	// term, that the record store continues this journal's chain (at most
	// ~10 s; a store that cannot be read lets them through). Set it
	// whenever RunExporter runs: without it, records committed before the
	// first check may land in a journal whose store is then refused.
	ExportCheck bool
	// WALSegmentSize is the size of a raft-wal segment file, preallocated
	// when the segment is created (default 64 MiB, raft-wal's): the free
	// disk space the log needs before the next segment fails to open.
	WALSegmentSize int
	// SelfID is this node's SPIFFE ID: the actor of the admin event
	// records of changes the node makes on its own, with no caller in the
	// context (WithActor; events.go). Default "tier0-node:<NodeID>".
	SelfID string

	// tune adjusts the raft config (tests shorten timeouts).
	tune func(*raft.Config)
	// wrapWAL wraps the raft-wal store (tests inject write faults).
	wrapWAL func(walStore) walStore
}

// Node is one member of the tier0 raft cluster.
type Node struct {
	cfg      Config
	log      *slog.Logger
	m        *metrics
	fsm      *fsm
	raft     *raft.Raft
	logs     *logStore
	closeWAL func() error
	addr     raft.ServerAddress
	// startIndex is the last index of the local log when the node opened:
	// WaitLeader waits (bounded) until a follower has replayed it.
	startIndex uint64

	// recordsMu serialises records proposals on the leader; barrierTerm is
	// the last term in which a barrier passed here (journal.go
	// proposeRecords).
	recordsMu   sync.Mutex
	barrierTerm atomic.Uint64

	commitCh      chan *commitReq
	fwdSem        chan struct{} // forwards in flight from this follower's committer
	closing       chan struct{} // closed by Close
	committerDone chan struct{}
	notifyCh      chan bool
	notifyDone    chan struct{}
	raftStopped   chan struct{} // closed by Close once raft has shut down
	closeOnce     sync.Once
	closeErr      error

	health *exportHealth // what the exporter found about the record store (storecheck.go)
	// idemSink is the record store RunExporter was given: idempotency
	// lookups of exported records read it (idem.go).
	idemSink atomic.Pointer[Sink]
	// cpMu keeps "exported" entries out while a checkpoint is read,
	// signed and applied (checkpoint.go exportGate).
	cpMu              sync.Mutex
	testExportBlocked func() // tests: called when markExported waits for cpMu
	testProposing     func() // tests: called by the committer once it will propose a batch

	leaderMu             sync.Mutex
	leaderChanged        chan struct{} // closed and replaced when this node gains or loses leadership
	lastDivergedTransfer time.Time     // health.go transferIfDiverged
}

// New opens the stores, starts raft and returns. It does not wait for a
// leader: see WaitLeader.
func New(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.NodeID == "" || cfg.DataDir == "" {
		return nil, fmt.Errorf("ha: config: NodeID and DataDir are required: %w", ErrInvalid)
	}
	if cfg.MaxBatchRecords <= 0 {
		cfg.MaxBatchRecords = DefaultMaxBatchRecords
	}
	if cfg.ApplyTimeout <= 0 {
		cfg.ApplyTimeout = DefaultApplyTimeout
	}
	if cfg.SnapshotThreshold == 0 {
		cfg.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if cfg.TrailingLogs == 0 {
		cfg.TrailingLogs = DefaultTrailingLogs
	}
	if cfg.ForwardsInFlight <= 0 {
		cfg.ForwardsInFlight = DefaultForwardsInFlight
	}
	if cfg.WALSegmentSize == 0 {
		cfg.WALSegmentSize = DefaultWALSegmentSize
	}
	if cfg.WALSegmentSize < minWALSegmentSize || cfg.WALSegmentSize > maxWALSegmentSize {
		return nil, fmt.Errorf("ha: config: WALSegmentSize %d outside [%d, %d]: %w", cfg.WALSegmentSize, minWALSegmentSize, maxWALSegmentSize, ErrInvalid)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ha: new: %w", err)
	}
	log := cfg.Logger.With("node", cfg.NodeID)
	hlog := newHCLogger(log)

	walDir := filepath.Join(cfg.DataDir, "raft", "wal")
	snapDir := filepath.Join(cfg.DataDir, "raft", "snapshots")
	for _, d := range []string{walDir, snapDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("ha: new: %w", err)
		}
	}
	// The node owns raft-wal's meta store (a bbolt file with an exclusive
	// lock) and closes it after the WAL: the log store may reopen the WAL
	// (logstore.go), and closing the stuck instance must not close the
	// meta store the fresh one uses.
	meta := &metadb.BoltMetaDB{}
	openWAL := func() (walStore, error) {
		w, err := raftwal.Open(walDir, raftwal.WithLogger(hlog.Named("wal")), raftwal.WithMetaStore(keptMeta{meta}),
			raftwal.WithSegmentSize(cfg.WALSegmentSize))
		if err != nil {
			return nil, fmt.Errorf("ha: open wal %s: %w", walDir, err)
		}
		if cfg.wrapWAL != nil {
			return cfg.wrapWAL(w), nil
		}
		return w, nil
	}
	m := newMetrics(cfg.Registerer)
	logs, err := newLogStore(openWAL, m, log)
	if err != nil {
		_ = meta.Close()
		return nil, err
	}
	closeWAL := func() error { return errors.Join(logs.Close(), meta.Close()) }
	snaps, err := raft.NewFileSnapshotStoreWithLogger(snapDir, snapshotRetain, hlog.Named("snapshots"))
	if err != nil {
		_ = closeWAL()
		return nil, fmt.Errorf("ha: open snapshots %s: %w", snapDir, err)
	}
	trans := cfg.Transport
	if trans == nil {
		_, trans = raft.NewInmemTransport(raft.ServerAddress(cfg.NodeID))
	}

	n := &Node{
		cfg: cfg, log: log, m: m, logs: logs, closeWAL: closeWAL, addr: trans.LocalAddr(),
		commitCh:      make(chan *commitReq, 4*cfg.MaxBatchRecords),
		fwdSem:        make(chan struct{}, cfg.ForwardsInFlight),
		closing:       make(chan struct{}),
		committerDone: make(chan struct{}),
		notifyCh:      make(chan bool, 8),
		notifyDone:    make(chan struct{}),
		raftStopped:   make(chan struct{}),
		leaderChanged: make(chan struct{}),
		health:        newExportHealth(),
	}
	n.fsm = newFSM(log, n.m)
	n.fsm.onDiverge = n.transferIfDiverged

	rc := raftConfig(cfg, hlog, n.notifyCh)
	if err := raft.ValidateConfig(rc); err != nil {
		_ = closeWAL()
		return nil, fmt.Errorf("ha: raft config: %w", err)
	}
	if n.startIndex, err = logs.LastIndex(); err != nil {
		_ = closeWAL()
		return nil, fmt.Errorf("ha: wal: last index: %w", err)
	}
	exists, err := raft.HasExistingState(logs, logs, snaps)
	if err != nil {
		_ = closeWAL()
		return nil, fmt.Errorf("ha: check existing state: %w", err)
	}
	r, err := raft.NewRaft(rc, n.fsm, logs, logs, snaps, trans)
	if err != nil {
		_ = closeWAL()
		return nil, fmt.Errorf("ha: start raft: %w", err)
	}
	if err := removedFrom(r, cfg.NodeID, cfg.DataDir); exists && err != nil {
		_ = r.Shutdown().Error()
		_ = closeWAL()
		return nil, err
	}
	n.fsm.running.Store(true) // later Restores are installs, not the startup load
	n.raft = r
	if cfg.Bootstrap && !exists {
		boot := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(cfg.NodeID), Address: n.addr}}}
		if err := r.BootstrapCluster(boot).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			_ = r.Shutdown().Error()
			_ = closeWAL()
			return nil, fmt.Errorf("ha: bootstrap: %w", err)
		}
	}
	go n.watchLeadership()
	go n.runCommitter()
	return n, nil
}

// keptMeta is the meta store as a WAL sees it: closing a WAL leaves it open.
type keptMeta struct{ *metadb.BoltMetaDB }

func (keptMeta) Close() error { return nil }

// raftConfig returns the raft tuning (see DESIGN.md for the reasons).
func raftConfig(cfg Config, hlog hclog.Logger, notify chan bool) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hlog
	rc.NotifyCh = notify
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.MaxAppendEntries = 16 // entries can be ~1 MiB (1024 records); bound one AppendEntries RPC
	rc.NoLegacyTelemetry = true
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if cfg.LeaderLeaseTimeout > 0 {
		rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	}
	if cfg.tune != nil {
		cfg.tune(rc)
	}
	return rc
}

// watchLeadership consumes raft's NotifyCh (raft blocks on it) and wakes
// goroutines waiting for a leadership change.
func (n *Node) watchLeadership() {
	defer close(n.notifyDone)
	for {
		select {
		case isLeader := <-n.notifyCh:
			n.log.Info("ha: leadership changed", "leader", isLeader)
			n.leaderMu.Lock()
			close(n.leaderChanged)
			n.leaderChanged = make(chan struct{})
			n.leaderMu.Unlock()
			if isLeader {
				n.transferIfDiverged()
			}
		case <-n.raftStopped:
			return
		}
	}
}

// leadershipChange returns a channel closed at this node's next leadership
// change.
func (n *Node) leadershipChange() <-chan struct{} {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	return n.leaderChanged
}

func (n *Node) isLeader() bool { return n.raft.State() == raft.Leader }

// WaitLeader blocks until the cluster has a leader. On the leader it also
// waits (raft Barrier) until every earlier entry is applied, so local reads
// see all committed state, including log replay after a restart; a
// follower waits until it has replayed the log it had when it opened (as
// far as the leader has committed it), so that Health reflects it.
func (n *Node) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if _, id := n.raft.LeaderWithID(); id != "" {
			if !n.isLeader() {
				if n.replayed() {
					return nil
				}
				goto wait
			}
			term := n.raft.CurrentTerm()
			err := n.raft.Barrier(n.cfg.ApplyTimeout).Error()
			if err == nil {
				n.passedBarrier(term)
				return nil
			}
			if errors.Is(err, raft.ErrRaftShutdown) {
				return translate("wait leader", err)
			}
		}
	wait:
		select {
		case <-ctx.Done():
			return fmt.Errorf("ha: wait leader: %w: %w", ErrUnavailable, ctx.Err())
		case <-n.closing:
			return fmt.Errorf("ha: wait leader: %w: node closed", ErrUnavailable)
		case <-t.C:
		}
	}
}

// passedBarrier records that a barrier proposed in term passed: every
// entry from earlier terms is applied here.
func (n *Node) passedBarrier(term uint64) {
	if n.raft.CurrentTerm() == term {
		n.barrierTerm.Store(term)
	}
}

// replayed reports whether a follower has applied the local log it opened
// with, or as much of it as the leader has committed: the commit index is
// known (> 0) once the leader's first AppendEntries matched this log. raft
// counts an entry applied once it is handed to the FSM, so the FSM may
// still be applying (and latch diverged) just after: callers that must not
// miss a divergence also check the errors of their writes.
func (n *Node) replayed() bool {
	commit := n.raft.CommitIndex()
	return commit > 0 && n.raft.AppliedIndex() >= min(n.startIndex, commit)
}

// Close stops the committer and raft and closes the stores. Pending commits
// fail with ErrUnavailable.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		close(n.closing)
		var errs []error
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("ha: close: raft: %w", err))
		}
		close(n.raftStopped)
		<-n.committerDone
		<-n.notifyDone
		if err := n.closeWAL(); err != nil {
			errs = append(errs, fmt.Errorf("ha: close: wal: %w", err))
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// IsLeader reports whether this node is the raft leader now.
func (n *Node) IsLeader() bool { return n.isLeader() }

// LeaderID returns the node ID of the leader this node knows, "" when it
// knows none (no quorum, or an election is under way).
func (n *Node) LeaderID() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// Snapshot takes a raft snapshot of the state now (raft otherwise takes
// them by SnapshotThreshold and SnapshotInterval).
func (n *Node) Snapshot() error {
	if err := n.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("ha: snapshot: %w", err)
	}
	return nil
}

// Status describes this node and the cluster as it sees it.
type Status struct {
	NodeID, State, Leader                      string
	Term, CommitIndex, AppliedIndex, LastIndex uint64
	Journal                                    JournalStatus
	Servers                                    []Server
}

// Server is one member of the raft configuration.
type Server struct{ ID, Address, Suffrage string }

// Status returns a point-in-time status.
func (n *Node) Status() Status {
	_, leader := n.raft.LeaderWithID()
	st := Status{
		NodeID: n.cfg.NodeID, State: n.raft.State().String(), Leader: string(leader),
		Term: n.raft.CurrentTerm(), CommitIndex: n.raft.CommitIndex(),
		AppliedIndex: n.raft.AppliedIndex(), LastIndex: n.raft.LastIndex(),
		Journal: n.JournalStatus(),
	}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			st.Servers = append(st.Servers, Server{ID: string(s.ID), Address: string(s.Address), Suffrage: s.Suffrage.String()})
		}
	}
	return st
}

// apply proposes one command and waits for it to be applied. It returns the
// FSM's typed response, or the FSM's error response, or a translated raft
// error.
func (n *Node) apply(ctx context.Context, op string, typ byte, v any) (any, error) {
	data, err := encodeCommand(typ, v)
	if err != nil {
		return nil, err
	}
	return n.applyRaw(ctx, op, data)
}

// applyRaw applies a command on the leader: here, or forwarded to it. It
// runs the checks the leader runs on a forwarded command first
// (checkCommand), so this node never proposes what it would refuse from
// another, and a diverged node writes nothing.
func (n *Node) applyRaw(ctx context.Context, op string, data []byte) (any, error) {
	if err := n.refuseIfDiverged(op); err != nil {
		return nil, err
	}
	cmd, err := checkCommand(data)
	if err != nil {
		return nil, err
	}
	if cmd, err = addDigest(cmd); err != nil {
		return nil, err
	}
	if n.forwarding() {
		// The leader checks the digest and the command again, and
		// proposes it with its own digest (handleForward).
		return n.forwardApply(ctx, op, cmd)
	}
	return n.applyLocal(ctx, op, cmd)
}

// applyLocal proposes data to this node's raft.
func (n *Node) applyLocal(ctx context.Context, op string, data []byte) (any, error) {
	select {
	case <-n.closing:
		return nil, fmt.Errorf("ha: %s: %w: node closed", op, ErrUnavailable)
	default:
	}
	fut := n.raft.Apply(data, n.cfg.ApplyTimeout)
	done := make(chan error, 1)
	go func() { done <- fut.Error() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("ha: %s: %w", op, ctx.Err())
	case <-n.raftStopped:
		// raft does not answer a future that raced with Shutdown.
		select {
		case err = <-done:
		default:
			return nil, fmt.Errorf("ha: %s: %w: node closed", op, ErrUnavailable)
		}
	}
	if err != nil {
		return nil, n.orWriteFault(op, err)
	}
	resp := fut.Response()
	if err, ok := resp.(error); ok {
		return nil, err
	}
	return resp, nil
}

// newHCLogger adapts slog for raft and raft-wal, which log through hclog.
func newHCLogger(l *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name: "raft", Level: hclog.Info, Output: &slogWriter{l: l}, DisableTime: true,
	})
}

type slogWriter struct{ l *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	lvl := slog.LevelInfo
	switch {
	case strings.HasPrefix(msg, "[ERROR]"):
		lvl = slog.LevelError
	case strings.HasPrefix(msg, "[WARN]"):
		lvl = slog.LevelWarn
	case strings.HasPrefix(msg, "[DEBUG]"), strings.HasPrefix(msg, "[TRACE]"):
		lvl = slog.LevelDebug
	}
	if i := strings.IndexByte(msg, ']'); i >= 0 && strings.HasPrefix(msg, "[") {
		msg = strings.TrimSpace(msg[i+1:])
	}
	w.l.Log(context.Background(), lvl, msg, "component", "raft")
	return len(p), nil
}
