package ha

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/tier0-ca/tier0/ca/record"
)

// Journal lineage (see "Store identity" in DESIGN.md). The journal's
// replicated state names the cluster and the line of history it belongs
// to (record.Lineage); the record store is claimed with the same lineage
// by the first exporter, and an exporter refuses a store of another
// lineage, or one whose chain its journal does not continue.
//
// The lineage is set by a command the leader's exporter proposes (the FSM
// never invents IDs or times): at the cluster's first start a new one
// from genesis; for a journal from an older tier0 (no lineage yet) the
// store's lineage when the store's chain and the journal's agree, else a
// new one. `tier0 backup restore` writes it into the snapshot it installs: the
// backup's lineage with --store, a new one (starting after the backup's
// exported seq) without.
//
// The command is ignorable: a node that predates it keeps a correct
// journal, it only exports without the checks (as it always did). If such
// a node's snapshot drops the lineage, the next exporter of a newer node
// adopts the store's lineage again (the chains agree).
const cmdLineage byte = ignorableFlag | 0x40

type lineageCmd struct {
	Lineage record.Lineage `json:"lineage"`
}

// validate is the stateless part of checkLineage (integrity.go payloads).
func (c *lineageCmd) validate() error {
	if err := checkLineage(&c.Lineage, math.MaxUint64); err != nil {
		return fmt.Errorf("ha: lineage: %w: %w", ErrInvalid, err)
	}
	return nil
}

// applyLineage sets the journal's lineage once. Setting the same lineage
// again is a no-op; another one is ErrExists.
func (f *fsm) applyLineage(payload []byte) any {
	var c lineageCmd
	if err := decode("lineage", payload, &c); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.s
	if err := checkLineage(&c.Lineage, s.seq); err != nil {
		return fmt.Errorf("ha: lineage: %w: %w", ErrInvalid, err)
	}
	if s.lineage != nil {
		if s.lineage.Same(c.Lineage) {
			return nil
		}
		return fmt.Errorf("ha: lineage: the journal is already %s: %w", s.lineage, ErrExists)
	}
	s.lineage = cloneLineage(&c.Lineage)
	return nil
}

// checkLineage validates a lineage from a command or a snapshot of a
// journal at seq (nil is valid: none set yet).
func checkLineage(l *record.Lineage, seq uint64) error {
	if l == nil {
		return nil
	}
	if err := l.Validate(); err != nil {
		return err
	}
	if l.BaseSeq > seq {
		return fmt.Errorf("%w: base seq %d is beyond the journal's seq %d", record.ErrLineage, l.BaseSeq, seq)
	}
	if l.BaseSeq == 0 && !bytes.Equal(l.BaseHash, record.Genesis) {
		return fmt.Errorf("%w: a lineage from genesis must have the genesis base hash", record.ErrLineage)
	}
	return nil
}

func cloneLineage(l *record.Lineage) *record.Lineage {
	if l == nil {
		return nil
	}
	c := *l
	c.BaseHash = bytes.Clone(l.BaseHash)
	return &c
}

// Lineage returns the journal's lineage from local state; ok is false
// until an exporter has set it.
func (n *Node) Lineage() (l record.Lineage, ok bool) {
	n.fsm.read(func(s *state) {
		if s.lineage != nil {
			l, ok = *cloneLineage(s.lineage), true
		}
	})
	return l, ok
}

// proposeLineage sets the journal's lineage (leader only) and returns the
// lineage the journal then has.
func (n *Node) proposeLineage(ctx context.Context, l record.Lineage) (record.Lineage, error) {
	data, err := encodeCommand(cmdLineage, lineageCmd{Lineage: l})
	if err == nil {
		data, err = addDigest(data) // integrity.go
	}
	if err != nil {
		return record.Lineage{}, err
	}
	if _, err := n.applyLocal(ctx, "set lineage", data); err != nil && !errors.Is(err, ErrExists) {
		if errors.Is(err, ErrNotLeader) {
			return record.Lineage{}, errLostLeadership
		}
		return record.Lineage{}, err
	}
	got, ok := n.Lineage()
	if !ok {
		return record.Lineage{}, fmt.Errorf("ha: lineage: not set after the command applied: %w", ErrUnavailable)
	}
	return got, nil
}

// chainHashAt returns the journal's hash of record seq while the journal
// can still tell it: from the last exported record (whose hash the first
// unexported one links to) to the head. ok is false outside that window.
func (s *state) chainHashAt(seq uint64) (hash []byte, ok bool) {
	switch {
	case seq > s.seq || seq < s.exportedSeq:
		return nil, false
	case seq == s.seq:
		return s.head, true
	case seq == s.exportedSeq:
		return s.tail[0].PrevHash, true // s.seq > s.exportedSeq: the tail is not empty
	}
	return s.tail[seq-s.exportedSeq-1].Hash, true
}
