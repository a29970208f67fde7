package tlog

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

// sliceRanger serves records from memory (storage.Store.Range).
type sliceRanger []*record.Record

func (s sliceRanger) Range(_ context.Context, from, to uint64, fn func(*record.Record) error) error {
	for _, r := range s {
		if r.Seq >= from && (to == 0 || r.Seq <= to) {
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// goldenRecord is the fixed record of docs/AUDIT.md's leaf vector.
func goldenRecord(seq uint64, prev []byte) *record.Record {
	at := time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC)
	r := &record.Record{Seq: seq, Serial: "4a7a0ff", SPIFFEID: "spiffe://example.org/web", AgentID: "spiffe://example.org/tier0/agent/a",
		NotBefore: at, NotAfter: at.Add(time.Hour), IssuerKeyID: "0102", PublicKeySHA256: "aa", NodeID: "node-1",
		CommittedAt: at.Add(time.Second), CertDER: []byte{0x30, 0x00}}
	r.Serial += strings.Repeat("0", int(seq-1)) // distinct serials
	r.Seal(prev)
	return r
}

// TestGoldenLeaf pins the leaf encoding and hashing documented in
// docs/AUDIT.md (a change is a format change).
func TestGoldenLeaf(t *testing.T) {
	r := goldenRecord(1, record.Genesis)
	if c := hex.EncodeToString(r.Canonical()); c != goldenCanonical {
		t.Errorf("canonical %s, want %s", c, goldenCanonical)
	}
	got := LeafHash(r)
	if h := hex.EncodeToString(got[:]); h != goldenLeafHash {
		t.Errorf("leaf hash %s, want %s", h, goldenLeafHash)
	}
	var tr Tree
	prev := record.Genesis
	for seq := uint64(1); seq <= 3; seq++ {
		rec := goldenRecord(seq, prev)
		prev = rec.Hash
		if err := tr.Append(rec); err != nil {
			t.Fatal(err)
		}
	}
	root, err := tr.Root(3)
	if err != nil {
		t.Fatal(err)
	}
	if h := hex.EncodeToString(root[:]); h != goldenRoot3 {
		t.Errorf("root of the 3 golden records = %s, want %s", h, goldenRoot3)
	}
}

// The vectors of docs/AUDIT.md "Merkle tree and proofs".
const (
	goldenCanonical = "0100000000000000010000000734613761306666000000187370696666653a2f2f6578616d706c652e6f72672f776562000000227370696666653a2f2f6578616d706c652e6f72672f74696572302f6167656e742f610006ba2d4475b5800006ba2e1b0959800000000430313032000000026161000000066e6f64652d310006ba2d4484f7c0000000023000"
	goldenLeafHash  = "9b8f6d424b0e22cc9346ffc1f671cabe7378a7c55167d42ddac2ccc9b32b52fa"
	goldenRoot3     = "16110949e445681f0a1693af6df40e496090a5acd61ce8ed0e47d28ea2a1274b"
)

func TestProofs(t *testing.T) {
	ctx := context.Background()
	recs := storagetest.Chain("proofs", 1, 100, record.Genesis)
	var tr Tree
	if err := tr.Extend(ctx, sliceRanger(recs), 60, recs[59].Hash); err != nil {
		t.Fatal(err)
	}
	r60, _ := tr.Root(60)
	if err := tr.Extend(ctx, sliceRanger(recs), 100, recs[99].Hash); err != nil {
		t.Fatal(err)
	}
	r100, _ := tr.Root(100)
	for _, i := range []int64{0, 1, 41, 59} {
		for _, n := range []int64{60, 100} {
			root := map[int64]Hash{60: r60, 100: r100}[n]
			p, err := tr.ProveInclusion(i, n)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckInclusion(p, n, root, i, LeafHash(recs[i])); err != nil {
				t.Fatalf("leaf %d in %d: %v", i, n, err)
			}
			if err := CheckInclusion(p, n, root, i, LeafHash(recs[i+1])); err == nil {
				t.Fatalf("leaf %d's proof accepted another leaf", i)
			}
		}
	}
	p, err := tr.ProveConsistency(60, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckConsistency(p, 100, r100, 60, r60); err != nil {
		t.Fatal(err)
	}
	// A split view: another tree of size 100 that shares the first 60.
	forked := append(append([]*record.Record{}, recs[:60]...), storagetest.Chain("fork", 61, 40, recs[59].Hash)...)
	var tf Tree
	if err := tf.Extend(ctx, sliceRanger(forked), 100, nil); err != nil {
		t.Fatal(err)
	}
	f100, _ := tf.Root(100)
	if err := CheckConsistency(p, 100, f100, 60, r60); err == nil {
		t.Fatal("consistency proof accepted a forked tree")
	}
	// The chain is checked while the tree is built.
	bad := append([]*record.Record{}, recs...)
	edited := *bad[10]
	edited.SPIFFEID = "spiffe://example.org/evil"
	bad[10] = &edited
	var tb Tree
	if err := tb.Extend(ctx, sliceRanger(bad), 100, nil); !errors.Is(err, ErrTree) {
		t.Fatalf("Extend over an edited record = %v", err)
	}
	if err := (&Tree{}).Extend(ctx, sliceRanger(recs), 50, recs[48].Hash); !errors.Is(err, ErrTree) {
		t.Fatalf("Extend with a wrong head = %v", err)
	}
}

func TestSignOpen(t *testing.T) {
	k := storagetest.NewAuditKey(t)
	c := Checkpoint{Origin: Origin("example.org"), Size: 42}
	c.Root[0] = 7
	msg, err := Sign(c, k.Signer, k.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Open(msg, k.Cert.Raw, k.Roots())
	if err != nil || got != c {
		t.Fatalf("Open = %+v, %v", got, err)
	}
	edited := []byte(string(msg))
	edited[len(c.Origin)+1] = '5' // size 52
	if _, err := Open(edited, k.Cert.Raw, k.Roots()); !errors.Is(err, ErrSignature) {
		t.Fatalf("Open of an edited note = %v", err)
	}
	other := storagetest.NewAuditKey(t)
	if _, err := Open(msg, k.Cert.Raw, other.Roots()); !errors.Is(err, ErrSignature) {
		t.Fatalf("Open against another bundle = %v", err)
	}
	if _, err := Open(msg, other.Cert.Raw, other.Roots()); !errors.Is(err, ErrSignature) {
		t.Fatalf("Open with another audit key = %v", err)
	}
}
