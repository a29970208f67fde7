package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/tier0-ca/tier0/ca/record"
)

// ProblemNotInJournal: the store holds a record the journal does not: at a
// seq beyond the journal's head (appended to the store: a forged tail,
// however well chained), or with another hash than the journal's at a seq
// the journal still holds.
const ProblemNotInJournal = "not in journal"

// maxBeyond bounds how many store records beyond the journal head
// CompareJournal looks at (the first is the problem).
const maxBeyond = 1024

// CompareJournal compares the end of the store with the journal: every
// stored record at a seq the journal still holds (view().ExportedSeq up to
// its head) must have the journal's hash, and no stored record may lie
// beyond the journal's head. view is called once before reading the store
// and, when the store holds records beyond that view's head, once more:
// records exported meanwhile by the leader are then in the journal (the
// caller's view should wait, on a follower, until the journal has applied
// the seq it is given). It reports the lowest bad seq, or 0.
func CompareJournal(ctx context.Context, s Ranger, view func(ctx context.Context, atLeast uint64) record.JournalView) (seq uint64, problem, detail string, err error) {
	v := view(ctx, 0)
	type beyond struct {
		seq  uint64
		hash []byte
	}
	var out []beyond
	sawExported := v.ExportedSeq == 0
	stop := errors.New("stop")
	err = s.Range(ctx, max(v.ExportedSeq, 1), 0, func(r *record.Record) error {
		if r.Seq == v.ExportedSeq {
			sawExported = true
		}
		if h, ok := v.HashAt(r.Seq); ok {
			if !bytes.Equal(h, r.Hash) {
				seq, problem = r.Seq, ProblemNotInJournal
				detail = fmt.Sprintf("record %d in the store has hash %x, the journal's is %x: the stored record is not the one issued", r.Seq, short(r.Hash), short(h))
				return stop
			}
			return nil
		}
		if r.Seq > v.Seq() {
			out = append(out, beyond{r.Seq, r.Hash})
			if len(out) >= maxBeyond {
				return stop
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, stop) {
		return 0, "", "", fmt.Errorf("storage: compare journal: %w", err)
	}
	if seq != 0 {
		return seq, problem, detail, nil
	}
	if !sawExported {
		return v.ExportedSeq, ProblemMissing, fmt.Sprintf("the journal exported records up to seq %d but the store does not hold it: records removed at the end", v.ExportedSeq), nil
	}
	if len(out) == 0 {
		return 0, "", "", nil
	}
	v2 := view(ctx, out[len(out)-1].seq)
	for _, b := range out {
		h, ok := v2.HashAt(b.seq)
		switch {
		case ok && !bytes.Equal(h, b.hash):
			return b.seq, ProblemNotInJournal, fmt.Sprintf("record %d in the store has hash %x, the journal's is %x: the stored record is not the one issued", b.seq, short(b.hash), short(h)), nil
		case !ok && b.seq > v2.Seq():
			return b.seq, ProblemNotInJournal, fmt.Sprintf("record %d is in the store but the journal ends at seq %d: appended to the store, not issued (a forged tail)", b.seq, v2.Seq()), nil
		}
	}
	return 0, "", "", nil
}

func short(h []byte) []byte { return h[:min(len(h), 8)] }

// Report records a problem found after VerifyAudit (by CompareJournal or
// a certificate check) when r has none at a lower seq.
func (r *AuditResult) Report(seq uint64, problem, detail string) {
	if problem == "" || (!r.OK() && r.FirstBad <= seq) {
		return
	}
	r.FirstBad, r.Problem, r.Detail = seq, problem, detail
}
