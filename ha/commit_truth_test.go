package ha

import (
	"context"
	"testing"

	"github.com/tier0-ca/tier0/ca/record"
)

// TestCommitAnswerIsTheTruth: a caller whose context ends while its
// records are being proposed gets the real outcome (success: they are
// committed), not its context's error; one whose context ended before
// the proposal gets the error and nothing is committed.
func TestCommitAnswerIsTheTruth(t *testing.T) {
	n := startNode(t, t.TempDir(), newTestClock())
	ctx, cancel := context.WithCancel(context.Background())
	n.testProposing = func() { cancel() } // the caller gives up just as its batch is proposed
	before := n.JournalStatus().Seq
	if err := n.Commit(ctx, []*record.Record{testRecord("truth")}); err != nil {
		t.Fatalf("Commit whose caller gave up during the proposal = %v, want success (it was committed)", err)
	}
	if after := n.JournalStatus().Seq; after != before+1 {
		t.Fatalf("journal moved by %d, want 1", after-before)
	}
	n.testProposing = nil
	if err := n.Commit(ctx, []*record.Record{testRecord("truth")}); err == nil {
		t.Fatal("Commit with an ended context succeeded")
	}
	if after := n.JournalStatus().Seq; after != before+1 {
		t.Fatalf("a commit whose caller had gone was journaled (moved by %d)", after-before)
	}
}
