package storagetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
)

// Tamperer edits a store's database behind its back, as an attacker with
// SQL access would.
type Tamperer interface {
	// Exec runs one statement; placeholders are written '?'.
	Exec(ctx context.Context, query string, args ...any) error
	// Insert writes r into issuance_records as is, without any check.
	Insert(ctx context.Context, r *record.Record) error
}

// TamperN is the length of the chain RunTamper builds.
const TamperN = 50

// RunTamper builds a good chain of TamperN records in a fresh store for
// each kind of tampering, applies it with SQL and checks that Verify names
// the first bad seq and the problem.
func RunTamper(t *testing.T, open func(t *testing.T) (storage.Store, Tamperer)) {
	type edit func(c []*record.Record) (stmts []string, args []any, forged *record.Record)
	sql := func(args []any, stmts ...string) edit {
		return func([]*record.Record) ([]string, []any, *record.Record) { return stmts, args, nil }
	}
	// shift renumbers seq >= from by `by`, avoiding primary key collisions.
	shift := func(from uint64, by int) []string {
		return []string{
			fmt.Sprintf("UPDATE issuance_records SET seq = seq + 1000000 WHERE seq >= %d", from),
			fmt.Sprintf("UPDATE issuance_records SET seq = seq - 1000000 + (%d) WHERE seq >= 1000000", by)}
	}
	// swap exchanges the contents of two rows, keeping their seqs.
	swap := func(a, b uint64) edit {
		return sql(nil, fmt.Sprintf("UPDATE issuance_records SET seq = 1000000 WHERE seq = %d", a),
			fmt.Sprintf("UPDATE issuance_records SET seq = %d WHERE seq = %d", a, b),
			fmt.Sprintf("UPDATE issuance_records SET seq = %d WHERE seq = 1000000", b))
	}
	forge := func(sealed bool) edit {
		return func(c []*record.Record) ([]string, []any, *record.Record) {
			f := Gen("forged", 17)
			f.Seal(c[15].Hash)
			if !sealed {
				f.Hash = make([]byte, record.HashSize)
			}
			return shift(17, 1), nil, f
		}
	}
	tests := []struct {
		name     string
		edit     edit
		firstBad uint64
		problem  string
	}{
		{"intact", sql(nil), 0, ""},
		{"spiffe_id changed", sql([]any{"spiffe://example.org/evil"}, "UPDATE issuance_records SET spiffe_id = ? WHERE seq = 17"),
			17, storage.ProblemModified},
		{"cert changed", sql([]any{[]byte{0x30, 0x01, 0x02}}, "UPDATE issuance_records SET cert_der = ? WHERE seq = 17"),
			17, storage.ProblemModified},
		{"prev_hash changed", sql([]any{make([]byte, record.HashSize)}, "UPDATE issuance_records SET prev_hash = ? WHERE seq = 17"),
			17, storage.ProblemModified},
		{"first record changed", sql(nil, "UPDATE issuance_records SET node_id = 'evil' WHERE seq = 1"),
			1, storage.ProblemModified},
		{"deleted", sql(nil, "DELETE FROM issuance_records WHERE seq = 17"), 17, storage.ProblemMissing},
		{"deleted and renumbered", sql(nil, append([]string{"DELETE FROM issuance_records WHERE seq = 17"}, shift(18, -1)...)...),
			17, storage.ProblemMissing},
		{"forged record inserted", forge(true), 17, storage.ProblemInserted},
		{"unsealed record inserted", forge(false), 17, storage.ProblemInserted},
		{"adjacent records swapped", swap(20, 21), 20, storage.ProblemReordered},
		{"distant records swapped", swap(20, 30), 20, storage.ProblemReordered},
		{"changed and re-hashed", func(c []*record.Record) ([]string, []any, *record.Record) {
			m := *c[16]
			m.SPIFFEID = "spiffe://example.org/evil"
			m.Seal(c[15].Hash)
			return []string{"UPDATE issuance_records SET spiffe_id = ?, hash = ? WHERE seq = 17"}, []any{m.SPIFFEID, m.Hash}, nil
		}, 18, storage.ProblemBrokenLink},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, tam := open(t)
			c := Chain("tamper", 1, TamperN, record.Genesis)
			Append(t, s, c, TamperN)
			stmts, args, forged := tc.edit(c)
			for i, q := range stmts {
				a := args
				if i > 0 {
					a = nil
				}
				if err := tam.Exec(ctx, q, a...); err != nil {
					t.Fatalf("tamper %q: %v", q, err)
				}
			}
			if forged != nil {
				if err := tam.Insert(ctx, forged); err != nil {
					t.Fatalf("insert forged record: %v", err)
				}
			}
			res, err := storage.Verify(ctx, s, 1, 0)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if res.FirstBad != tc.firstBad || res.Problem != tc.problem {
				t.Fatalf("Verify = first bad seq %d %q, want seq %d %q", res.FirstBad, res.Problem, tc.firstBad, tc.problem)
			}
			if tc.problem == "" && res.Checked != TamperN {
				t.Fatalf("Verify of the intact chain checked %d records, want %d", res.Checked, TamperN)
			}
			if (tc.problem == storage.ProblemModified || tc.problem == storage.ProblemMissing) && res.Checked != tc.firstBad-1 {
				t.Errorf("Verify checked %d records before seq %d, want %d", res.Checked, tc.firstBad, tc.firstBad-1)
			}
		})
	}
}
