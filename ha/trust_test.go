package ha

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestTrustState(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	dir := t.TempDir()
	n := startNode(t, dir, clock)
	key := func(id string, life time.Duration) JWTKey {
		return JWTKey{ID: id, PublicKey: []byte("pub-" + id), NotAfter: clock.Now().Add(life), Node: "n1"}
	}
	if err := n.PublishJWTKey(ctx, key("a", time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := n.PublishJWTKey(ctx, key("a", time.Hour)); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate: got %v, want ErrExists", err)
	}
	if err := n.PublishJWTKey(ctx, key("b", 3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := n.PublishJWTKey(ctx, key("c", -time.Hour)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("expired key: got %v, want ErrInvalid", err)
	}
	clock.Add(2 * time.Hour)
	if k, err := n.PruneJWTKeys(ctx); err != nil || k != 1 {
		t.Fatalf("prune: %d, %v; want 1", k, err)
	}
	if k, err := n.PruneJWTKeys(ctx); err != nil || k != 0 {
		t.Fatalf("second prune: %d, %v; want 0", k, err)
	}

	fed := Federation{TrustDomain: "peer.org", Endpoint: "https://127.0.0.1:1/", Profile: "https_web", Bundle: []byte(`{"keys":[]}`)}
	if err := n.SetFederation(ctx, fed); err != nil {
		t.Fatal(err)
	}
	if err := n.SetFederation(ctx, Federation{TrustDomain: "x.org", Endpoint: "https://x", Profile: "ftp"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad profile: got %v", err)
	}
	fed.Bundle = nil // an update without a bundle keeps the stored one
	fed.Endpoint = "https://127.0.0.1:2/"
	if err := n.SetFederation(ctx, fed); err != nil {
		t.Fatal(err)
	}
	if err := n.SetFederatedBundle(ctx, "nobody.org", []byte("{}"), time.Minute); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown federation: got %v", err)
	}
	st := n.TrustState()
	if len(st.JWTKeys) != 1 || st.JWTKeys[0].ID != "b" || len(st.Federations) != 1 ||
		string(st.Federations[0].Bundle) != `{"keys":[]}` || st.Federations[0].Endpoint != "https://127.0.0.1:2/" {
		t.Fatalf("state: %+v", st)
	}

	// It survives a snapshot and restart.
	if err := n.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n2 := startNode(t, dir, clock)
	if got := n2.TrustState(); got.Sequence != st.Sequence || len(got.JWTKeys) != 1 || len(got.Federations) != 1 {
		t.Fatalf("after restart: %+v, want %+v", got, st)
	}
	if err := n2.DeleteFederation(ctx, "peer.org"); err != nil {
		t.Fatal(err)
	}
	if err := n2.DeleteFederation(ctx, "peer.org"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: got %v", err)
	}
}
