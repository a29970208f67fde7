package storagetest

import (
	"context"
	"strings"
	"testing"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
)

// viewOf returns the journal view of a journal holding chain, exported up
// to seq exported.
func viewOf(chain []*record.Record, exported uint64) record.JournalView {
	v := record.JournalView{ExportedSeq: exported}
	if exported > 0 {
		v.ExportedHash = chain[exported-1].Hash
	}
	for _, r := range chain[exported:] {
		v.Hashes = append(v.Hashes, r.Hash)
	}
	return v
}

// runJournalTail: storage.CompareJournal catches a forged tail that
// VerifyAudit cannot (correctly chained, after the newest checkpoint), a
// stored record that differs from the journal's unexported one, and
// records removed at the end; records exported between the two views are
// not mistaken for forged ones.
func runJournalTail(t *testing.T, open func(t *testing.T) (storage.AuditStore, Tamperer)) {
	const n = 30
	forged := func(real []*record.Record, seq uint64) *record.Record {
		r := Gen("forged", seq)
		r.Seal(real[seq-2].Hash)
		return r
	}
	tests := []struct {
		name    string
		store   func(real []*record.Record) []*record.Record
		views   func(real []*record.Record) []record.JournalView // first, then after the wait
		seq     uint64
		problem string
		detail  string
	}{
		{"intact, all exported", func(real []*record.Record) []*record.Record { return real },
			func(real []*record.Record) []record.JournalView { return []record.JournalView{viewOf(real, n)} }, 0, "", ""},
		{"intact, exporter behind", func(real []*record.Record) []*record.Record { return real[:n-3] },
			func(real []*record.Record) []record.JournalView { return []record.JournalView{viewOf(real, n-3)} }, 0, "", ""},
		{"exported between the views", func(real []*record.Record) []*record.Record { return real },
			func(real []*record.Record) []record.JournalView {
				return []record.JournalView{viewOf(real[:n-2], n-2), viewOf(real, n)}
			}, 0, "", ""},
		{"forged tail after the last exported record", func(real []*record.Record) []*record.Record {
			return append(real[:n:n], forged(real, n+1))
		}, func(real []*record.Record) []record.JournalView { return []record.JournalView{viewOf(real, n)} },
			n + 1, storage.ProblemNotInJournal, "but the journal ends at seq 30"},
		{"forged record where the journal holds an unexported one", func(real []*record.Record) []*record.Record {
			return append(real[:n-1:n-1], forged(real, n))
		}, func(real []*record.Record) []record.JournalView { return []record.JournalView{viewOf(real, n-1)} },
			n, storage.ProblemNotInJournal, "the stored record is not the one issued"},
		{"records removed at the end", func(real []*record.Record) []*record.Record { return real[:n-2] },
			func(real []*record.Record) []record.JournalView { return []record.JournalView{viewOf(real, n)} },
			n, storage.ProblemMissing, "records removed at the end"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := open(t)
			k := NewAuditKey(t)
			real := Chain("journal", 1, n, record.Genesis)
			Append(t, s, tc.store(real), 8)
			if err := s.AppendCheckpoints(ctx, []record.Checkpoint{k.CheckpointAfter(t, real[19], 0)}); err != nil {
				t.Fatal(err)
			}
			// The chain and the checkpoints alone see nothing.
			if res, err := storage.VerifyAudit(ctx, s, 0, 0, k.Roots()); err != nil || !res.OK() {
				t.Fatalf("VerifyAudit = %+v, %v; want OK (the blind spot CompareJournal covers)", res, err)
			}
			views := tc.views(real)
			calls := 0
			seq, problem, detail, err := storage.CompareJournal(ctx, s, func(_ context.Context, _ uint64) record.JournalView {
				v := views[min(calls, len(views)-1)]
				calls++
				return v
			})
			if err != nil {
				t.Fatal(err)
			}
			if seq != tc.seq || problem != tc.problem || !strings.Contains(detail, tc.detail) {
				t.Fatalf("CompareJournal = seq %d %q (%s), want seq %d %q (%s)", seq, problem, detail, tc.seq, tc.problem, tc.detail)
			}
			if problem != "" {
				t.Logf("detected: %s: %s", problem, detail)
			}
		})
	}
}
