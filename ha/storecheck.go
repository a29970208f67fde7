package ha

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
)

// ErrStoreMismatch: the record store does not continue this journal's
// chain (it holds another cluster's or another lineage's records, or
// records this journal does not have, or lacks records this journal
// exported). The exporter refuses it for the life of the process, the node
// goes not-ready (ExportHealth) and stops issuing. Not retryable: the
// operator must fix --store or the restore (docs/OPERATIONS.md).
var ErrStoreMismatch = errors.New("ha: the record store does not continue this journal")

// exportCheckTimeout bounds the store check at the start of a leader
// term; record commits wait for it (Config.ExportCheck).
const exportCheckTimeout = 10 * time.Second

// exportHealth is what the exporter found about its store.
type exportHealth struct {
	mu      sync.Mutex
	term    uint64        // leader term of the last completed check (0: none)
	refused error         // latched ErrStoreMismatch, never cleared
	changed chan struct{} // closed and replaced at every update
}

func newExportHealth() *exportHealth { return &exportHealth{changed: make(chan struct{})} }

// checked records that the store was checked (or could not be reached)
// in leader term `term`: commits of that term may proceed.
func (h *exportHealth) checked(term uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.term = term
	close(h.changed)
	h.changed = make(chan struct{})
}

func (h *exportHealth) refuse(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.refused == nil {
		h.refused = err
	}
	close(h.changed)
	h.changed = make(chan struct{})
}

func (h *exportHealth) get() (term uint64, changed <-chan struct{}, refused error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.term, h.changed, h.refused
}

// ExportHealth returns nil while this node's exporter accepts its record
// store, and the refusal (wrapping ErrStoreMismatch, naming the store's and
// the journal's lineage and what to do) once it has refused it: from then
// on, until the process restarts, the node neither exports nor issues.
// Readiness checks should report it.
func (n *Node) ExportHealth() error {
	_, _, refused := n.health.get()
	return refused
}

// issueGate decides whether records may be committed now. A node whose
// exporter refused its store never commits (ErrUnavailable wrapping the
// refusal). With Config.ExportCheck, a leader also waits until its
// exporter has checked the store in the current term, so that nothing is
// acknowledged into a journal that turns out not to continue the store.
func (n *Node) issueGate(ctx context.Context) error {
	for {
		term, changed, refused := n.health.get()
		if refused != nil {
			return fmt.Errorf("ha: commit: %w: issuance stopped: %w", ErrUnavailable, refused)
		}
		if !n.cfg.ExportCheck || !n.isLeader() || term == n.raft.CurrentTerm() {
			return nil
		}
		lead := n.leadershipChange()
		t := time.NewTimer(exportCheckTimeout) // recheck: a term may pass without a leadership notification here
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("ha: commit: waiting for the record store check: %w", ctx.Err())
		case <-n.closing:
			t.Stop()
			return fmt.Errorf("ha: commit: %w: node closed", ErrUnavailable)
		case <-changed:
		case <-lead:
		case <-t.C:
		}
		t.Stop()
	}
}

// checkStore decides whether this journal may export to sink, at the start
// of a leader term. It returns the store's last seq, an ErrStoreMismatch
// refusal, or another error (the store could not be read: retried).
//
// A store is accepted when its lineage (if claimed) is the journal's, and
// its last record is on the journal's chain: its seq is between the
// journal's exported seq and its head, and its hash is the journal's hash
// at that seq. An unclaimed store is then claimed (atomically: of two
// racing clusters one wins, the other refuses); an unclaimed empty store
// is accepted only while this lineage has exported nothing. A journal
// without a lineage (older tier0) takes the store's, or a new one.
func (n *Node) checkStore(ctx context.Context, sink Sink) (uint64, error) {
	jl, hasJ := n.Lineage()
	js := n.JournalStatus()
	if !hasJ && n.firstStart() {
		// The cluster's first start: a new lineage, before anything is
		// issued and whether or not the store can be read.
		var err error
		if jl, err = n.proposeLineage(ctx, n.newLineage()); err != nil {
			return 0, err
		}
		hasJ = true
		n.log.Info("ha: export: journal lineage set", "lineage", jl.String())
	}
	sl, hasS, err := sink.Lineage(ctx)
	if err != nil {
		return 0, fmt.Errorf("ha: export: store lineage: %w", err)
	}
	last, err := sink.LastSeq(ctx)
	if err != nil {
		return 0, fmt.Errorf("ha: export: last seq: %w", err)
	}
	mismatch := func(format string, a ...any) error {
		return storeMismatch(fmt.Sprintf(format, a...), sl, hasS, jl, hasJ)
	}
	if hasS && hasJ && !sl.Same(jl) {
		return 0, mismatch("the record store and this journal are of different lineages")
	}
	if !hasS && last == 0 {
		// An empty, unclaimed store: this lineage's if it has exported nothing yet.
		base := uint64(0)
		if hasJ {
			base = jl.BaseSeq
		}
		if js.ExportedSeq != base {
			return 0, mismatch("the record store is empty, but this journal already exported records up to seq %d to another store", js.ExportedSeq)
		}
	} else {
		if last > js.Seq {
			return 0, mismatch("the record store ends at seq %d, beyond this journal's last seq %d: it holds records this journal does not have", last, js.Seq)
		}
		if last < js.ExportedSeq {
			return 0, mismatch("the record store ends at seq %d, but this journal already exported records up to seq %d: records %d..%d are not in this store", last, js.ExportedSeq, last+1, js.ExportedSeq)
		}
		got, err := storeHashAt(ctx, sink, last, sl, hasS)
		if err != nil {
			return 0, err
		}
		var want []byte
		n.fsm.read(func(s *state) { want, _ = s.chainHashAt(last) })
		if !bytes.Equal(got, want) {
			return 0, mismatch("the record store's record %d has hash %.16s…, this journal's record %d has hash %.16s…: the chains forked", last,
				hex.EncodeToString(got), last, hex.EncodeToString(want))
		}
	}
	if !hasJ {
		// A journal from an older tier0: it takes the lineage of a store
		// whose records it continues (checked above), else a new one.
		l := n.newLineage()
		switch {
		case hasS && last > sl.BaseSeq:
			l = sl
		case hasS:
			return 0, mismatch("the record store is claimed but holds no record of its lineage, and this journal has no lineage yet: nothing shows they belong together")
		}
		if jl, err = n.proposeLineage(ctx, l); err != nil {
			return 0, err
		}
		n.log.Info("ha: export: journal lineage set", "lineage", jl.String(), "adopted_from_store", hasS)
	}
	if !hasS {
		got, err := sink.ClaimLineage(ctx, jl, n.cfg.NodeID, n.cfg.Clock().UTC())
		if err != nil {
			return 0, fmt.Errorf("ha: export: claim the record store: %w", err)
		}
		if !got.Same(jl) {
			return 0, storeMismatch("another exporter claimed the record store first", got, true, jl, true)
		}
		n.log.Info("ha: export: record store claimed", "lineage", jl.String(), "store_seq", last)
		if last, err = sink.LastSeq(ctx); err != nil { // a restored lineage's empty store starts at its base
			return 0, fmt.Errorf("ha: export: last seq: %w", err)
		}
	}
	return last, nil
}

// newLineage is a new lineage from genesis (a cluster's first start).
func (n *Node) newLineage() record.Lineage {
	return record.Lineage{ClusterID: record.NewLineageID(), ID: record.NewLineageID(), BaseHash: record.Genesis, CreatedAt: n.cfg.Clock().UTC()}
}

// storeHashAt returns the hash of the store's record seq: genesis for 0,
// the lineage's base hash for a claimed store that starts after seq.
func storeHashAt(ctx context.Context, sink Sink, seq uint64, sl record.Lineage, claimed bool) ([]byte, error) {
	if seq == 0 {
		return record.Genesis, nil
	}
	var hash []byte
	if err := sink.Range(ctx, seq, seq, func(r *record.Record) error { hash = r.Hash; return nil }); err != nil {
		return nil, fmt.Errorf("ha: export: read store record %d: %w", seq, err)
	}
	if hash == nil && claimed && seq == sl.BaseSeq {
		hash = sl.BaseHash
	}
	if hash == nil {
		return nil, fmt.Errorf("ha: export: the record store has no record at its last seq %d", seq)
	}
	return hash, nil
}

// storeMismatch builds the refusal: what is wrong, both lineages, and what
// the operator can do.
func storeMismatch(what string, sl record.Lineage, hasS bool, jl record.Lineage, hasJ bool) error {
	store, journal := "unclaimed (no lineage yet)", "no lineage yet (journal from an older tier0)"
	if hasS {
		store = sl.String()
	}
	if hasJ {
		journal = jl.String()
	}
	hint := "point --store at this cluster's record store"
	switch {
	case hasS && hasJ && sl.ClusterID != jl.ClusterID:
		hint = "the store belongs to another CA or cluster: point --store at this cluster's record store (or a new, empty one for a new cluster)"
	case hasJ && jl.Parent != "":
		hint = fmt.Sprintf("this node was restored from a backup without --store (lineage %s started after seq %d): restore again with `tier0 backup restore --store DSN` to continue the store's chain, or point --store at a new, empty store to start lineage %s there",
			jl.ID, jl.BaseSeq, jl.ID)
	}
	return fmt.Errorf("ha: export: REFUSED: %w: %s (store: %s; journal: %s); nothing is exported or issued until this is fixed: %s",
		ErrStoreMismatch, what, store, journal, hint)
}
