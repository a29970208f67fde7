package core

import (
	"fmt"
	"strings"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
)

// Decision is one authorization decision: may Caller obtain Requested?
type Decision struct {
	ID        int64     // assigned by the store (0 when appending)
	At        time.Time // when it was decided (node clock, microseconds, UTC)
	NodeID    string
	Caller    string // caller's SPIFFE ID
	Requested string // requested SPIFFE ID
	Allowed   bool
	Reason    string // entry that granted it, or why it was denied (the rule)
	// Code is the gRPC code the caller was answered ("OK", "PermissionDenied",
	// "InvalidArgument", ...; migration 0009); empty on older rows.
	Code string
	// The decision chain (migration 0010), assigned by the store on
	// append: Seq 1, 2, 3, ... and Hash = SHA-256(PrevHash ‖ canonical)
	// (ca/record.Decision). Zero on rows written before it.
	Seq            uint64
	PrevHash, Hash []byte
}

// DecisionFilter selects decisions. Zero fields do not filter; Since <= at < Until.
type DecisionFilter struct {
	Caller    string
	Requested string
	Denied    bool // only denials
	Since     time.Time
	Until     time.Time
	Limit     int // 0 means DefaultLimit; at most MaxLimit
}

// NormalizeDecisions validates f (errors wrap ErrBadFilter) and fills defaults.
func NormalizeDecisions(f DecisionFilter) (DecisionFilter, error) {
	if err := checkID("caller", f.Caller); err != nil {
		return f, err
	}
	if err := checkID("requested", f.Requested); err != nil {
		return f, err
	}
	rf, err := Normalize(Filter{Since: f.Since, Until: f.Until, Limit: f.Limit})
	if err != nil {
		return f, err
	}
	f.Since, f.Until, f.Limit = rf.Since, rf.Until, rf.Limit
	return f, nil
}

// DecisionSQL builds the SELECT for a normalized decision filter.
func DecisionSQL(f DecisionFilter, ph func(int) string, timeArg func(time.Time) any) (string, []any) {
	var where []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, strings.Replace(cond, "?", ph(len(args)), 1))
	}
	if f.Caller != "" {
		add("caller = ?", f.Caller)
	}
	if f.Requested != "" {
		add("requested = ?", f.Requested)
	}
	if f.Denied {
		add("allowed = ?", false)
	}
	if !f.Since.IsZero() {
		add("decided_at >= ?", timeArg(f.Since))
	}
	if !f.Until.IsZero() {
		add("decided_at < ?", timeArg(f.Until))
	}
	q := "SELECT id, decided_at, node_id, caller, requested, allowed, reason, code FROM authz_decisions"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, f.Limit)
	q += " ORDER BY id DESC LIMIT " + ph(len(args))
	return q, args
}

// CheckCheckpoints validates checkpoints before they are stored.
func CheckCheckpoints(prefix string, cps []record.Checkpoint) error {
	for i, c := range cps {
		if c.Seq == 0 || c.Seq > 1<<63-1 {
			return fmt.Errorf("%s: append checkpoints: checkpoint %d: seq %d out of range", prefix, i, c.Seq)
		}
		if len(c.Head) != record.HashSize || len(c.Signature) == 0 || len(c.CertDER) == 0 {
			return fmt.Errorf("%s: append checkpoints: seq %d: head, signature and certificate are required", prefix, c.Seq)
		}
		if c.Prev != nil && *c.Prev >= c.Seq {
			return fmt.Errorf("%s: append checkpoints: seq %d: previous checkpoint %d is not before it", prefix, c.Seq, *c.Prev)
		}
	}
	return nil
}

// PrevArg is a checkpoint's prev_seq column value: NULL for a v1
// checkpoint (no link).
func PrevArg(c record.Checkpoint) any {
	if c.Prev == nil {
		return nil
	}
	return int64(*c.Prev)
}

// PrevFrom turns a scanned prev_seq column back into Checkpoint.Prev.
func PrevFrom(v *int64) *uint64 {
	if v == nil {
		return nil
	}
	p := uint64(*v)
	return &p
}

// PruneResult says what Prune removed.
type PruneResult struct {
	Checkpoint uint64 // the checkpoint the remaining chain starts from (0: nothing pruned)
	Records    int64  // records removed (seq < Checkpoint)
	Decisions  int64  // decisions removed (at < before)
}
