package ha

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tier0-ca/tier0/ca/record"
)

// Backup and restore (see "Backup and restore" in DESIGN.md). A backup
// payload is exactly a raft snapshot of this FSM (snapshot.go), so the same
// bytes can be inspected offline, advanced to a record store's head, and
// installed into a fresh cluster with raft's user-restore API.

// SnapshotInfo summarises a snapshot payload (InspectSnapshot).
type SnapshotInfo struct {
	Version     int
	Bundle      Bundle
	EntryIDs    []string // sorted
	Tokens      int
	CARoots     []CARoot
	Seq         uint64
	Head        []byte
	LastCommit  time.Time // CommittedAt of record Seq (zero when the journal is empty)
	ExportedSeq uint64
	TailLen     int
	Lineage     *record.Lineage // the journal's cluster and lineage (nil: not set yet, or an older snapshot)
}

// Backup takes a consistent snapshot of the replicated state through raft
// (leader only, after a barrier so that it holds every committed entry) and
// opens it. The caller must close the reader. The snapshot also stays in this
// node's snapshot store, like a periodic one.
func (n *Node) Backup(ctx context.Context) (*raft.SnapshotMeta, io.ReadCloser, error) {
	if !n.isLeader() {
		_, leader := n.raft.LeaderWithID()
		return nil, nil, fmt.Errorf("ha: backup: %w (leader: %q)", ErrNotLeader, leader)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("ha: backup: %w", err)
	}
	if err := n.raft.Barrier(n.cfg.ApplyTimeout).Error(); err != nil {
		return nil, nil, translate("backup: barrier", err)
	}
	fut := n.raft.Snapshot()
	if err := fut.Error(); err != nil {
		return nil, nil, translate("backup: snapshot", err)
	}
	meta, rc, err := fut.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("ha: backup: open snapshot: %w", err)
	}
	return meta, rc, nil
}

// RestoreBackup installs a snapshot payload (of meta.Size bytes) as the
// state of this cluster with raft's user restore: the leader takes the
// state and replicates it to followers as a snapshot. Meant for a freshly
// bootstrapped node (disaster recovery), never a cluster in service.
func (n *Node) RestoreBackup(ctx context.Context, meta *raft.SnapshotMeta, r io.Reader) error {
	if !n.isLeader() {
		return fmt.Errorf("ha: restore: %w", ErrNotLeader)
	}
	timeout := 10 * time.Minute
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	before := n.fsm.restores.Load()
	if err := n.raft.Restore(meta, r, timeout); err != nil {
		return fmt.Errorf("ha: restore: %w", err)
	}
	if n.fsm.restores.Load() == before {
		return fmt.Errorf("ha: restore: the snapshot was not applied: %w", ErrUnavailable)
	}
	return nil
}

// InspectSnapshot reads a whole snapshot payload without building the
// state: it checks the header, that the tail is consecutive, that every
// record's hash is right and links to the previous one, and that the tail
// ends at the journal head.
func InspectSnapshot(r io.Reader) (SnapshotInfo, error) { return WalkSnapshot(r, nil) }

// WalkSnapshot is InspectSnapshot that also calls fn (if not nil) with each
// verified tail record, in order.
func WalkSnapshot(r io.Reader, fn func(*record.Record) error) (SnapshotInfo, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<16))
	h, err := decodeHeader(dec)
	if err != nil {
		return SnapshotInfo{}, err
	}
	info := infoOf(h)
	var prev []byte
	for i := range h.TailLen {
		var rec record.Record
		if err := dec.Decode(&rec); err != nil {
			return info, fmt.Errorf("ha: inspect: record %d of %d: %w", i+1, h.TailLen, err)
		}
		if rec.Seq != h.ExportedSeq+uint64(i)+1 {
			return info, fmt.Errorf("ha: inspect: record seq %d out of order (want %d)", rec.Seq, h.ExportedSeq+uint64(i)+1)
		}
		if prev == nil {
			prev = rec.PrevHash
		}
		if err := rec.Verify(prev); err != nil {
			return info, fmt.Errorf("ha: inspect: %w", err)
		}
		prev = rec.Hash
		if fn != nil {
			if err := fn(&rec); err != nil {
				return info, err
			}
		}
	}
	if prev != nil && !bytes.Equal(prev, h.Head) {
		return info, fmt.Errorf("ha: inspect: %w: tail does not end at the journal head", record.ErrChain)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return info, fmt.Errorf("ha: inspect: trailing data after %d records", h.TailLen)
	}
	return info, nil
}

// AdvanceSnapshot copies a snapshot payload from r to w, moving its journal
// forward over records that reached the record store after the snapshot was
// taken. more(fn) must call fn with the store's records after the
// snapshot's head seq, in order (storage.Store.Range). Each must link to the
// previous one, starting at the snapshot's head; on success the copy's
// journal head is the last of them, all exported (its tail, which the store
// holds, is dropped). With no such records w gets r unchanged.
func AdvanceSnapshot(r io.Reader, w io.Writer, more func(fn func(*record.Record) error) error) (SnapshotInfo, error) {
	return RewriteSnapshot(r, w, more, nil)
}

// SetLineage decides the lineage of a rewritten snapshot (RewriteSnapshot)
// from its summary and the hash of its last exported record (ExportedSeq;
// the journal's chain continues from it). It returns nil to keep the
// snapshot's lineage.
type SetLineage func(info SnapshotInfo, exportedHash []byte) (*record.Lineage, error)

// NewLineage is the SetLineage of a restore that does not continue the
// record store's chain: a new lineage of the same cluster (a new cluster
// ID when the snapshot has none) starting after the snapshot's exported
// seq, created at `at`.
func NewLineage(at time.Time) SetLineage {
	return func(info SnapshotInfo, exportedHash []byte) (*record.Lineage, error) {
		l := &record.Lineage{ClusterID: record.NewLineageID(), ID: record.NewLineageID(),
			BaseSeq: info.ExportedSeq, BaseHash: bytes.Clone(exportedHash), CreatedAt: at.UTC()}
		if info.Lineage != nil {
			l.ClusterID, l.Parent = info.Lineage.ClusterID, info.Lineage.ID
		}
		return l, nil
	}
}

// RewriteSnapshot is AdvanceSnapshot (more may be nil: no records) that
// then lets lineage (nil: keep) replace the copy's lineage.
func RewriteSnapshot(r io.Reader, w io.Writer, more func(fn func(*record.Record) error) error, lineage SetLineage) (SnapshotInfo, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	dec := json.NewDecoder(br)
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return SnapshotInfo{}, fmt.Errorf("ha: snapshot header: %w", err)
	}
	h, err := decodeHeader(json.NewDecoder(bytes.NewReader(raw)))
	if err != nil {
		return SnapshotInfo{}, err
	}
	if more == nil {
		more = func(func(*record.Record) error) error { return nil }
	}
	prev, last, n := h.Head, (*record.Record)(nil), 0
	err = more(func(rec *record.Record) error {
		if rec.Seq != h.Seq+uint64(n)+1 {
			return fmt.Errorf("ha: advance: store record seq %d, want %d", rec.Seq, h.Seq+uint64(n)+1)
		}
		if err := rec.Verify(prev); err != nil {
			return fmt.Errorf("ha: advance: store record %d does not continue the backup's chain: %w", rec.Seq, err)
		}
		prev, last = rec.Hash, rec
		n++
		return nil
	})
	if err != nil {
		return infoOf(h), err
	}
	if last != nil {
		h.Seq, h.Head, h.ExportedSeq, h.TailLen = last.Seq, bytes.Clone(last.Hash), last.Seq, 0
		if last.CommittedAt.After(h.LastCommit) {
			h.LastCommit = last.CommittedAt
		}
	}
	// The first tail record (kept only when not advanced) links to the
	// hash of the last exported record.
	var first json.RawMessage
	exportedHash := h.Head
	if lineage != nil && last == nil && h.TailLen > 0 {
		var rec struct {
			PrevHash []byte
		}
		if err := dec.Decode(&first); err != nil {
			return infoOf(h), fmt.Errorf("ha: rewrite: record 1 of %d: %w", h.TailLen, err)
		}
		if err := json.Unmarshal(first, &rec); err != nil || len(rec.PrevHash) != record.HashSize {
			return infoOf(h), fmt.Errorf("ha: rewrite: record 1 of %d has no valid prev hash", h.TailLen)
		}
		exportedHash = rec.PrevHash
	}
	changed := last != nil
	if lineage != nil {
		l, err := lineage(infoOf(h), exportedHash)
		if err != nil {
			return infoOf(h), err
		}
		if l != nil {
			if err := checkLineage(l, h.Seq); err != nil {
				return infoOf(h), fmt.Errorf("ha: rewrite: %w", err)
			}
			h.Lineage, changed = cloneLineage(l), true
		}
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	if changed {
		if err := json.NewEncoder(bw).Encode(h); err != nil {
			return infoOf(h), fmt.Errorf("ha: rewrite: %w", err)
		}
	} else if _, err := bw.Write(raw); err != nil { // unchanged: the header bytes as read
		return infoOf(h), fmt.Errorf("ha: rewrite: %w", err)
	}
	if last == nil { // the tail, unless advanced over
		if first != nil { // the rest of the stream starts after it
			if !changed {
				first = append([]byte{'\n'}, first...)
			}
			if _, err := bw.Write(first); err != nil {
				return infoOf(h), fmt.Errorf("ha: rewrite: %w", err)
			}
		}
		if _, err := io.Copy(bw, io.MultiReader(dec.Buffered(), br)); err != nil {
			return infoOf(h), fmt.Errorf("ha: rewrite: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return infoOf(h), fmt.Errorf("ha: rewrite: %w", err)
	}
	return infoOf(h), nil
}

func decodeHeader(dec *json.Decoder) (snapshotHeader, error) {
	var h snapshotHeader
	if err := dec.Decode(&h); err != nil {
		return h, fmt.Errorf("ha: snapshot header: %w", err)
	}
	if h.Version != snapshotVersion {
		return h, fmt.Errorf("ha: snapshot header: unsupported snapshot version %d", h.Version)
	}
	if len(h.Head) != record.HashSize || h.ExportedSeq > h.Seq || h.TailLen < 0 || uint64(h.TailLen) != h.Seq-h.ExportedSeq {
		return h, fmt.Errorf("ha: snapshot header: inconsistent journal (seq %d, exported %d, tail %d)", h.Seq, h.ExportedSeq, h.TailLen)
	}
	if err := checkLineage(h.Lineage, h.Seq); err != nil {
		return h, fmt.Errorf("ha: snapshot header: %w", err)
	}
	return h, nil
}

func infoOf(h snapshotHeader) SnapshotInfo {
	info := SnapshotInfo{
		Version: h.Version, Bundle: h.Bundle.clone(), Tokens: len(h.Tokens),
		Seq: h.Seq, Head: bytes.Clone(h.Head), LastCommit: h.LastCommit, ExportedSeq: h.ExportedSeq, TailLen: h.TailLen,
		Lineage: cloneLineage(h.Lineage),
	}
	for _, e := range h.Entries {
		info.EntryIDs = append(info.EntryIDs, e.ID)
	}
	slices.Sort(info.EntryIDs)
	if h.CA != nil {
		info.CARoots = h.CA.clone().Roots
	}
	return info
}

// SnapshotHashAt returns the journal's hash of record seq from a snapshot
// payload, if the snapshot can still tell it (seq from its exported seq to
// its head: the first unexported record links to the last exported one).
// It verifies the payload as InspectSnapshot does.
func SnapshotHashAt(r io.Reader, seq uint64) (hash []byte, ok bool, err error) {
	info, err := WalkSnapshot(r, func(rec *record.Record) error {
		switch rec.Seq {
		case seq + 1:
			if hash == nil {
				hash = bytes.Clone(rec.PrevHash)
			}
		case seq:
			hash = bytes.Clone(rec.Hash)
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	switch {
	case seq > info.Seq || seq < info.ExportedSeq:
		return nil, false, nil
	case seq == info.Seq:
		return info.Head, true, nil
	}
	return hash, hash != nil, nil
}
