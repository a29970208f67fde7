package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
)

// Lineage returns a lineage of cluster `cluster` starting after record
// base (nil: from genesis).
func Lineage(cluster, id string, base *record.Record) record.Lineage {
	l := record.Lineage{ClusterID: cluster, ID: id, BaseHash: record.Genesis, CreatedAt: Base}
	if base != nil {
		l.BaseSeq, l.BaseHash, l.Parent = base.Seq, base.Hash, "parent-"+id
	}
	return l
}

func claim(t *testing.T, s storage.Store, l record.Lineage) record.Lineage {
	t.Helper()
	got, err := s.ClaimLineage(context.Background(), l, "node-1", Base.Add(time.Hour))
	if err != nil {
		t.Fatalf("ClaimLineage(%s): %v", l, err)
	}
	return got
}

func sameLineage(a, b record.Lineage) bool {
	return a.Same(b) && a.BaseSeq == b.BaseSeq && string(a.BaseHash) == string(b.BaseHash) &&
		a.Parent == b.Parent && a.CreatedAt.Equal(b.CreatedAt)
}

// testLineage: an unclaimed store has no lineage; the first claim wins
// and is kept; a later claim gets the first lineage back; a malformed one
// is refused.
func testLineage(t *testing.T, s storage.Store) {
	ctx := context.Background()
	if _, ok, err := s.Lineage(ctx); err != nil || ok {
		t.Fatalf("Lineage of a new store = ok %v, %v; want unclaimed", ok, err)
	}
	for _, bad := range []record.Lineage{
		{ClusterID: "c", ID: "", BaseHash: record.Genesis, CreatedAt: Base},
		{ClusterID: "c d", ID: "l", BaseHash: record.Genesis, CreatedAt: Base},
		{ClusterID: "c", ID: "l", BaseHash: []byte{1}, CreatedAt: Base},
		{ClusterID: "c", ID: "l", BaseHash: record.Genesis},
	} {
		if _, err := s.ClaimLineage(ctx, bad, "node-1", Base); !errors.Is(err, record.ErrLineage) {
			t.Errorf("ClaimLineage(%+v) = %v, want ErrLineage", bad, err)
		}
	}
	if _, ok, _ := s.Lineage(ctx); ok {
		t.Fatal("a refused claim claimed the store")
	}
	a := Lineage("cluster-a", "lineage-a", nil)
	if got := claim(t, s, a); !sameLineage(got, a) {
		t.Fatalf("ClaimLineage = %+v, want %+v", got, a)
	}
	b := Lineage("cluster-b", "lineage-b", nil)
	if got := claim(t, s, b); !sameLineage(got, a) {
		t.Fatalf("second ClaimLineage = %+v, want the first claim %+v kept", got, a)
	}
	got, ok, err := s.Lineage(ctx)
	if err != nil || !ok || !sameLineage(got, a) {
		t.Fatalf("Lineage = %+v, %v, %v; want %+v", got, ok, err, a)
	}
	if n := lastSeq(t, s); n != 0 {
		t.Fatalf("LastSeq of an empty store claimed from genesis = %d", n)
	}
}

// testLineageRace: of concurrent claims (separate connections where the
// backend has them) exactly one wins and every caller is told which.
func testLineageRace(t *testing.T, s storage.Store) {
	const n = 8
	got := make([]record.Lineage, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got[i], errs[i] = s.ClaimLineage(context.Background(), Lineage(fmt.Sprintf("cluster-%d", i), "l", nil), "node-1", Base)
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("claim %d: %v", i, errs[i])
		}
		if !sameLineage(got[i], got[0]) {
			t.Fatalf("claim %d was told %s, claim 0 %s: two claims won", i, got[i], got[0])
		}
	}
	stored, _, err := s.Lineage(context.Background())
	if err != nil || !sameLineage(stored, got[0]) {
		t.Fatalf("stored lineage %s, %v; winners were told %s", stored, err, got[0])
	}
}

// testLineageBase: a store claimed by a lineage restored after seq 10
// starts there: LastSeq is 10 while it is empty, Append takes 11.. and
// refuses 1.., and a prefix append does not move the base.
func testLineageBase(t *testing.T, s storage.Store) {
	ctx := context.Background()
	c := Chain("base", 1, 20, record.Genesis)
	claim(t, s, Lineage("cluster-a", "restored", c[9]))
	if n := lastSeq(t, s); n != 10 {
		t.Fatalf("LastSeq of an empty store claimed after seq 10 = %d, want 10", n)
	}
	if err := s.Append(ctx, c[12:14]); !errors.Is(err, storage.ErrGap) {
		t.Fatalf("Append(13..14) to a store based at 10 = %v, want ErrGap", err)
	}
	Append(t, s, c[10:15], 5)
	Append(t, s, c[10:20], 3)
	if n := lastSeq(t, s); n != 20 {
		t.Fatalf("LastSeq = %d, want 20", n)
	}
	if got := seqs(Collect(t, s, 0, 0)); len(got) != 10 || got[0] != 11 {
		t.Fatalf("Range = %v, want 11..20", got)
	}
}

// testAuditLineageBase: VerifyAudit of a store claimed after seq 20
// checks records 21.. from the lineage's base hash (and a checkpoint link
// to before the base is not a deleted checkpoint); a store whose base hash
// is not the one its first record links to fails at that record.
func testAuditLineageBase(t *testing.T, open func(t *testing.T) (storage.AuditStore, Tamperer)) {
	ctx := context.Background()
	k := NewAuditKey(t)
	recs, cps := AuditChain(t, k)
	for _, tc := range []struct {
		name     string
		base     record.Lineage
		firstBad uint64
		problem  string
	}{
		{"intact", Lineage("c", "restored", recs[19]), 0, ""},
		{"wrong base hash", func() record.Lineage { l := Lineage("c", "restored", recs[19]); l.BaseHash = recs[18].Hash; return l }(),
			21, storage.ProblemBrokenLink},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := open(t)
			claim(t, s, tc.base)
			Append(t, s, recs[20:], 16)
			if err := s.AppendCheckpoints(ctx, cps[2:]); err != nil {
				t.Fatal(err)
			}
			res, err := storage.VerifyAudit(ctx, s, 0, 0, k.Roots())
			if err != nil {
				t.Fatal(err)
			}
			if res.FirstBad != tc.firstBad || res.Problem != tc.problem {
				t.Fatalf("VerifyAudit = first bad %d %q (%s), want %d %q", res.FirstBad, res.Problem, res.Detail, tc.firstBad, tc.problem)
			}
			if !res.OK() {
				return
			}
			if res.Base != 20 || res.Checked != TamperN-20 || res.Checkpoints != 3 || res.LastCheckpoint != TamperN {
				t.Fatalf("VerifyAudit = %+v, want base 20, %d records and 3 checkpoints", res, TamperN-20)
			}
			res.RequireCheckpoint(20, true) // in the previous store
			if !res.OK() {
				t.Fatalf("RequireCheckpoint(20) on a store based at 20: %s", res.Detail)
			}
		})
	}
}
