package ha

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestCAActivationGate: key reports replace one another per node; the gate
// refuses a root some voter cannot sign with (never overridable), then one
// published for less than the window (unless forced, with a warning); the
// per-node views say what each root is on each node; reports and taints
// survive a snapshot and restart.
func TestCAActivationGate(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	dir := t.TempDir()
	n := startNode(t, dir, clock)
	root := func(id, state string) CARoot {
		return CARoot{ID: id, State: state, KeyURI: "soft:/k/" + id, CertDER: []byte("cert-" + id), NotAfter: clock.Now().Add(24 * time.Hour)}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := n.AddCARoot(ctx, "example.org", root("a", RootActive))
	must(err)
	_, err = n.AddCARoot(ctx, "example.org", root("b", RootPrepared))
	must(err)
	voters, err := n.Voters()
	must(err)
	if len(voters) != 1 || voters[0] != "n1" {
		t.Fatalf("voters %v, want [n1]", voters)
	}
	window := 10 * time.Minute
	gate := func(force bool) (string, error) {
		return GateActivation(n.CAState(), "b", []string{"n1", "n2"}, clock.Now(), window, force)
	}
	if _, err := gate(true); !errors.Is(err, ErrPrecondition) || !strings.Contains(err.Error(), "n1 (no report yet); n2 (no report yet)") {
		t.Fatalf("gate with no reports: %v", err)
	}
	if _, err := gate(false); !errors.Is(err, ErrPrecondition) || !strings.Contains(err.Error(), "not every voter") || !strings.Contains(err.Error(), "; and published 0s ago") {
		t.Fatalf("gate with no reports, inside the window: want both reasons, got %v", err)
	}
	must(n.ReportCAKeys(ctx, NodeCAKeys{Node: "n1", Issuing: "a", Ready: []string{"b", "a"}, At: clock.Now()}))
	must(n.ReportCAKeys(ctx, NodeCAKeys{Node: "n2", Issuing: "a", Ready: []string{"a"}, Errors: map[string]string{"b": "open: no such file"}, At: clock.Now()}))
	if _, err := gate(true); !errors.Is(err, ErrPrecondition) || !strings.Contains(err.Error(), "n2 (open: no such file)") || strings.Contains(err.Error(), "n1") {
		t.Fatalf("gate with n2 unable to sign: %v", err)
	}
	st := n.CAState()
	b, _ := st.Root("b")
	if v := st.NodeView(b, "n2", clock.Now(), time.Hour); v != "prepared (cannot sign: open: no such file)" {
		t.Fatalf("n2's view of b: %q", v)
	}
	// n2's new report replaces its old one.
	must(n.ReportCAKeys(ctx, NodeCAKeys{Node: "n2", Issuing: "a", Ready: []string{"a", "b"}, At: clock.Now()}))
	if st := n.CAState(); len(st.Nodes) != 2 || st.Nodes[1].Node != "n2" || len(st.Nodes[1].Errors) != 0 {
		t.Fatalf("reports after n2 re-reported: %+v", st.Nodes)
	}
	clock.Add(time.Minute)
	if _, err := gate(false); !errors.Is(err, ErrPrecondition) || !strings.Contains(err.Error(), "publish window 10m0s") {
		t.Fatalf("gate inside the window: %v", err)
	}
	if w, err := gate(true); err != nil || !strings.Contains(w, "published only 1m0s ago") {
		t.Fatalf("forced gate: warning %q, err %v", w, err)
	}
	clock.Add(window)
	if w, err := gate(false); err != nil || w != "" {
		t.Fatalf("gate after the window: warning %q, err %v", w, err)
	}
	_, err = n.ActivateCARoot(ctx, "b")
	must(err)
	// n1 switched, n2 not yet: a is still active on n2, b is activating there.
	must(n.ReportCAKeys(ctx, NodeCAKeys{Node: "n1", Issuing: "b", Ready: []string{"a", "b"}, At: clock.Now()}))
	st = n.CAState()
	a, _ := st.Root("a")
	b, _ = st.Root("b")
	views := []string{st.View(a, clock.Now(), time.Hour), st.NodeView(a, "n1", clock.Now(), time.Hour), st.NodeView(a, "n2", clock.Now(), time.Hour), st.NodeView(b, "n2", clock.Now(), time.Hour)}
	if want := []string{ViewActive, ViewPublishedOld, ViewActive, ViewActivating}; strings.Join(views, ",") != strings.Join(want, ",") {
		t.Fatalf("views while n2 switches: %v, want %v", views, want)
	}
	// Once n2 is gone from the cluster, a is published-old, then retired.
	st = st.ForMembers([]string{"n1"})
	if v := st.View(a, clock.Now(), time.Hour); v != ViewPublishedOld {
		t.Fatalf("a without n2: %q", v)
	}
	if v := st.View(a, clock.Now().Add(time.Hour), time.Hour); v != ViewRetired {
		t.Fatalf("a after its SVIDs expired: %q", v)
	}

	// Taints: only a replaced root, only a known JWT key, once.
	if err := n.TaintCAKey(ctx, TaintX509, "b"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("taint the active root: %v", err)
	}
	if err := n.TaintCAKey(ctx, TaintX509, "zz"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("taint an unknown root: %v", err)
	}
	if err := n.TaintCAKey(ctx, TaintJWT, "kid-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("taint an unknown jwt key: %v", err)
	}
	must(n.PublishJWTKey(ctx, JWTKey{ID: "kid-1", PublicKey: []byte("pub"), NotAfter: clock.Now().Add(time.Hour), Node: "n1"}))
	must(n.TaintCAKey(ctx, TaintX509, "a"))
	must(n.TaintCAKey(ctx, TaintJWT, "kid-1"))
	if err := n.TaintCAKey(ctx, TaintX509, "a"); !errors.Is(err, ErrExists) {
		t.Fatalf("taint twice: %v", err)
	}
	if st := n.CAState(); !st.Tainted(TaintX509, "a") || !st.Tainted(TaintJWT, "kid-1") || st.Tainted(TaintX509, "b") {
		t.Fatalf("taints: %+v", st.Taints)
	}

	must(n.raft.Snapshot().Error())
	want := n.CAState()
	must(n.Close())
	n2 := startNode(t, dir, clock)
	got := n2.CAState()
	if got.Sequence != want.Sequence || len(got.Nodes) != 2 || !got.Nodes[0].Same(want.Nodes[0]) || len(got.Taints) != 2 {
		t.Fatalf("after restart: %+v, want %+v", got, want)
	}
}
