package keys

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
)

// activeJWT records the CA's active JWT key.
type activeJWT struct {
	mu  sync.Mutex
	ids []string
}

func (a *activeJWT) SetJWTKey(k ca.JWTKey) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ids = append(a.ids, k.ID)
	return nil
}

func (a *activeJWT) list() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.ids...)
}

// TestJWTRotation: a key is published before it signs, the next one is
// published at half life and activated at 5/6 of it.
func TestJWTRotation(t *testing.T) {
	node := startNode(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	active := &activeJWT{}
	j := &JWTKeys{State: node, CA: active, NodeID: "n1", Lifetime: 3 * time.Second, Logger: slog.New(slog.DiscardHandler)}
	if err := j.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ks := node.TrustState().JWTKeys
	if ids := active.list(); len(ks) != 1 || len(ids) != 1 || ks[0].ID != ids[0] || ks[0].Node != "n1" {
		t.Fatalf("after Start: published %+v, active %v", ks, ids)
	}
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	waitFor(t, "the next key to be published", func() bool { return len(node.TrustState().JWTKeys) == 2 })
	if ids := active.list(); len(ids) != 1 {
		t.Fatalf("the next key signs before 5/6 of the lifetime: %v", ids)
	}
	next := node.TrustState().JWTKeys
	waitFor(t, "the next key to be activated", func() bool { return len(active.list()) == 2 })
	ids := active.list()
	if ids[1] == ids[0] || (ids[1] != next[0].ID && ids[1] != next[1].ID) {
		t.Fatalf("activated %v, published %+v", ids, next)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestJWTTaint: a tainted signing key is replaced at once (a new key is
// published and signs), long before its half life.
func TestJWTTaint(t *testing.T) {
	node := startNode(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	active := &activeJWT{}
	j := &JWTKeys{State: node, CA: active, NodeID: "n1", Lifetime: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	if err := j.Start(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	first := active.list()[0]
	if err := node.TaintCAKey(ctx, ha.TaintJWT, first); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the tainted key to be replaced", func() bool { return len(active.list()) == 2 })
	ids := active.list()
	published := node.TrustState().JWTKeys
	if ids[1] == first || len(published) != 2 || (published[0].ID != ids[1] && published[1].ID != ids[1]) {
		t.Fatalf("after the taint: active %v, published %+v", ids, published)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
