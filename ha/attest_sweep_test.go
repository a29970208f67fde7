package ha

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"
)

// TestReplayKeysBounded: replay keys expire at the time their log entry
// carries and are swept on apply, so a steady stream of attestations keeps
// the used set at about one window's worth (here 50 a day, keys kept a
// day: never more than 51 plus one sweep interval's, against 5,000
// attestations). Two FSMs applying the same entries hold the same state,
// a snapshot carries the keys and the sweep time, and a key is refused
// until its entry-time expiry, never by a node's wall clock.
func TestReplayKeysBounded(t *testing.T) {
	f, g := newTestFSM(t), newTestFSM(t)
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	const perDay, days = 50, 100
	step := 24 * time.Hour / perDay
	maxUsed := 0
	rec := func(i int, now time.Time, key string, until time.Time) any {
		cmd := mustCommand(t, cmdRecordAttestation, recordAttestationCmd{
			Attestation: Attestation{Agent: fmt.Sprintf("a%d", i%7), Attestor: "aws_iid", Keys: []ReplayKey{{Key: key, Until: until}}},
			Now:         now,
		})
		r := applyData(f, cmd)
		if r2 := applyData(g, cmd); fmt.Sprint(r) != fmt.Sprint(r2) {
			t.Fatalf("entry %d: %v on one FSM, %v on the other", i, r, r2)
		}
		return r
	}
	for i := range perDay * days {
		now := start.Add(time.Duration(i) * step)
		if err, ok := rec(i, now, fmt.Sprintf("aws_iid:instance:%d", i), now.Add(24*time.Hour)).(error); ok {
			t.Fatalf("attestation %d: %v", i, err)
		}
		maxUsed = max(maxUsed, len(f.s.attest.Used))
	}
	if bound := perDay + 1 + int(replaySweepEvery/step) + 1; maxUsed > bound {
		t.Fatalf("used keys peaked at %d after %d attestations, want <= %d", maxUsed, perDay*days, bound)
	}
	t.Logf("%d attestations, used keys peaked at %d", perDay*days, maxUsed)
	if !bytes.Equal(stateDump(t, f), stateDump(t, g)) {
		t.Fatal("two FSMs applying the same entries differ")
	}

	// The newest key is refused until its expiry as the entry says, and
	// accepted from then on, even before a sweep dropped it.
	last := perDay*days - 1
	lastAt := start.Add(time.Duration(last) * step)
	key := fmt.Sprintf("aws_iid:instance:%d", last)
	if err, _ := rec(last+1, lastAt.Add(24*time.Hour-time.Second), key, lastAt.Add(48*time.Hour)).(error); !errors.Is(err, ErrReplayed) {
		t.Fatalf("replay inside the window: %v", err)
	}
	if err, ok := rec(last+2, lastAt.Add(24*time.Hour), key, lastAt.Add(48*time.Hour)).(error); ok {
		t.Fatalf("key after its expiry: %v", err)
	}

	// A snapshot carries the used keys and the next sweep.
	dump := stateDump(t, f)
	h := newTestFSM(t)
	if err := h.Restore(io.NopCloser(bytes.NewReader(dump))); err != nil {
		t.Fatal(err)
	}
	if len(h.s.attest.Used) != len(f.s.attest.Used) || !h.s.attest.NextSweep.Equal(f.s.attest.NextSweep) || h.s.attest.NextSweep.IsZero() {
		t.Fatalf("restored %d keys, next sweep %v; want %d, %v", len(h.s.attest.Used), h.s.attest.NextSweep, len(f.s.attest.Used), f.s.attest.NextSweep)
	}
	if !bytes.Equal(stateDump(t, h), dump) {
		t.Fatal("restored state differs")
	}
}
