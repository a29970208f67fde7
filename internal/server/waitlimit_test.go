package server

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ha"
)

// TestPeerWatch: an answer resets the wait; only silence for the whole
// limit ends it, with the members and what to do; a removal is returned at
// once; no limit (0) or no other member never gives up.
func TestPeerWatch(t *testing.T) {
	ctx := context.Background()
	start := time.Unix(1000, 0)
	now := start
	var answered bool
	var askErr error
	others := []string{"node1=127.0.0.1:1", "node2=127.0.0.1:2"}
	w := &peerWatch{
		ask:     func(context.Context) (bool, error) { return answered, askErr },
		members: func() []string { return others },
		limit:   time.Minute, nodeID: "node3", dataDir: "/d", now: func() time.Time { return now }, last: start,
	}
	step := func(d time.Duration) error { now = now.Add(d); return w.check(ctx) }
	if err := step(50 * time.Second); err != nil {
		t.Fatalf("before the limit: %v", err)
	}
	answered = true
	if err := step(5 * time.Second); err != nil {
		t.Fatalf("answered: %v", err)
	}
	answered = false
	if err := step(55 * time.Second); err != nil {
		t.Fatalf("the answer did not reset the wait: %v", err)
	}
	err := step(5 * time.Second)
	if !errors.Is(err, ErrNoMemberAnswers) {
		t.Fatalf("silent for the limit: %v", err)
	}
	for _, want := range []string{"node1=127.0.0.1:1, node2=127.0.0.1:2", "for 1m0s", "/d/raft", "/d/node/joined", "tier0 token create --node node3", "--cluster-wait-timeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %v", want, err)
		}
	}

	w.limit = 0
	if err := step(time.Hour); err != nil {
		t.Fatalf("no limit: %v", err)
	}
	w.limit, others = time.Minute, nil
	if err := step(time.Hour); err != nil {
		t.Fatalf("no other member: %v", err)
	}
	askErr = ha.ErrRemoved
	if err := step(time.Second); !errors.Is(err, ha.ErrRemoved) {
		t.Fatalf("removal: %v", err)
	}
}
