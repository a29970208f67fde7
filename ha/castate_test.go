package ha

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

func TestCARootLifecycle(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	dir := t.TempDir()
	n := startNode(t, dir, clock)
	root := func(id, state string) CARoot {
		return CARoot{ID: id, State: state, KeyURI: "soft:/k/" + id, CertDER: []byte("cert-" + id), NotAfter: clock.Now().Add(24 * time.Hour)}
	}
	if _, err := n.AddCARoot(ctx, "example.org", root("a", RootActive)); err != nil {
		t.Fatal(err)
	}
	if _, err := n.AddCARoot(ctx, "example.org", root("b", RootActive)); !errors.Is(err, ErrExists) {
		t.Fatalf("second active root: got %v, want ErrExists", err)
	}
	if _, err := n.AddCARoot(ctx, "other.org", root("b", RootPrepared)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("foreign trust domain: got %v, want ErrInvalid", err)
	}
	if _, err := n.AddCARoot(ctx, "example.org", root("b", RootPrepared)); err != nil {
		t.Fatal(err)
	}
	if b := n.Bundle(); len(b.Roots) != 2 || b.TrustDomain != "example.org" {
		t.Fatalf("bundle after prepare: %d roots, td %q; want 2, example.org", len(b.Roots), b.TrustDomain)
	}
	if act, _ := n.CAState().Active(); act.ID != "a" {
		t.Fatalf("active %q before activation, want a", act.ID)
	}
	if _, err := n.ActivateCARoot(ctx, "a"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("activate the active root: got %v, want ErrInvalid", err)
	}
	if _, err := n.ActivateCARoot(ctx, "zz"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("activate unknown: got %v, want ErrNotFound", err)
	}
	clock.Add(time.Minute)
	if _, err := n.ActivateCARoot(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	st := n.CAState()
	a, _ := st.Root("a")
	if act, _ := st.Active(); act.ID != "b" || a.State != RootRetired || !a.RetiredAt.Equal(clock.Now().UTC()) {
		t.Fatalf("after activate: active %q, a is %s retired at %v", act.ID, a.State, a.RetiredAt)
	}
	// Not yet prunable: retired after the cut-off.
	if k, err := n.PruneCARoots(ctx, clock.Now().Add(-time.Hour)); err != nil || k != 0 {
		t.Fatalf("early prune: %d, %v", k, err)
	}
	if k, err := n.PruneCARoots(ctx, clock.Now().Add(time.Second)); err != nil || k != 1 {
		t.Fatalf("prune: %d, %v; want 1", k, err)
	}
	if b := n.Bundle(); len(b.Roots) != 1 || !bytes.Equal(b.Roots[0], []byte("cert-b")) {
		t.Fatalf("bundle after prune: %q", b.Roots)
	}

	// The CA state survives a snapshot and restart.
	if err := n.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	seq := n.CAState().Sequence
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n2 := startNode(t, dir, clock)
	if st := n2.CAState(); st.Sequence != seq || len(st.Roots) != 1 || st.Roots[0].ID != "b" {
		t.Fatalf("after restart: %+v, want seq %d and root b", st, seq)
	}
}
