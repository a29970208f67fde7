package storagetest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/storage"
)

// TreeNoteStore is a store of tree checkpoints that takes cosignatures.
type TreeNoteStore interface {
	storage.TreeStore
	storage.TreeCosigner
}

// RunTreeNotes checks tree checkpoints and the cosignature swap on a
// backend: append is idempotent per size, a swap happens only from the
// stored note and only to a note that extends it.
func RunTreeNotes(t *testing.T, s TreeNoteStore) {
	ctx := context.Background()
	note := []byte("tier0/example.org\n3\nAAAA\n\n— tier0/example.org sig\n")
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, size := range []int64{3, 7} {
		if err := s.AppendTreeCheckpoint(ctx, storage.TreeCheckpoint{Size: size, Note: note, CertDER: []byte{1}, SignedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AppendTreeCheckpoint(ctx, storage.TreeCheckpoint{Size: 3, Note: []byte("other"), CertDER: []byte{2}, SignedAt: at}); err != nil {
		t.Fatalf("AppendTreeCheckpoint of a stored size: %v", err)
	}
	cosigned := append(bytes.Clone(note), "— witness.example w1\n"...)
	for _, tc := range []struct {
		name       string
		size       int64
		old, upd   []byte
		want, fail bool
	}{
		{"swap", 3, note, cosigned, true, false},
		{"stale old note", 3, note, append(bytes.Clone(note), "— w2 x\n"...), false, false},
		{"no such size", 5, note, cosigned, false, false},
		{"not an extension", 7, note, []byte("tier0/example.org\n3\nBBBB\n\n— x y\n"), false, true},
		{"same note", 7, note, note, false, true},
	} {
		ok, err := s.SwapTreeNote(ctx, tc.size, tc.old, tc.upd)
		if ok != tc.want || (err != nil) != tc.fail {
			t.Errorf("%s: SwapTreeNote = %v, %v; want %v, error %v", tc.name, ok, err, tc.want, tc.fail)
		}
	}
	tcs, err := s.TreeCheckpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tcs) != 2 || !bytes.Equal(tcs[0].Note, cosigned) || !bytes.Equal(tcs[1].Note, note) || !tcs[0].SignedAt.Equal(at) ||
		!bytes.Equal(tcs[0].CertDER, []byte{1}) {
		t.Fatalf("TreeCheckpoints = %+v", tcs)
	}
}
