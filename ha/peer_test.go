package ha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/internal/testenv"
)

// sentinels lists every ha sentinel a leader can answer with.
var sentinels = []error{ErrNotLeader, ErrInvalid, ErrNotFound, ErrUnavailable, ErrExists, ErrTokenInvalid}

// peerHarness is one peer server on loopback (plain TCP: the TLS layer is
// the transport's, tested in transport_test.go) answering with handle,
// and a PeerForwarder that dials it.
type peerHarness struct {
	addr string
	fwd  *PeerForwarder
	srv  *grpc.Server
	logs *peerLogs
}

// peerLogs is the peer server's log; take returns what was written since
// the previous take.
type peerLogs struct {
	buf  testenv.Buffer
	seen int
}

func (l *peerLogs) take() string {
	all := l.buf.String()
	out := all[l.seen:]
	l.seen = len(all)
	return out
}

func startPeer(t *testing.T, handle forwardHandler) *peerHarness {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &peerLogs{}
	srv := newPeerServer(handle, slog.New(slog.NewTextHandler(&logs.buf, nil)))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	var d net.Dialer
	fwd := NewPeerForwarder(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) })
	t.Cleanup(func() { _ = fwd.Close() })
	return &peerHarness{addr: ln.Addr().String(), fwd: fwd, srv: srv, logs: logs}
}

// TestPeerErrorRoundTrip: each ha sentinel the leader answers with
// arrives wrapped by the follower's error, with the leader's message, and
// no other sentinel does; anything else arrives as ErrUnavailable (the
// outcome is unknown) and is logged on the leader.
func TestPeerErrorRoundTrip(t *testing.T) {
	var mu sync.Mutex
	var answer error
	p := startPeer(t, func(_ context.Context, kind byte, payload []byte) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		if answer != nil {
			return nil, answer
		}
		return append([]byte{kind}, payload...), nil
	})
	respond := func(err error) {
		mu.Lock()
		answer = err
		mu.Unlock()
	}
	ctx := context.Background()

	out, err := p.fwd.Forward(ctx, p.addr, ForwardApply, []byte("cmd"))
	if err != nil || string(out) != "\x02cmd" {
		t.Fatalf("success: %q, %v", out, err)
	}
	for i, s := range sentinels {
		respond(fmt.Errorf("ha: test op: %w", s))
		_, err := p.fwd.Forward(ctx, p.addr, ForwardApply, []byte("cmd"))
		want := fmt.Sprintf("ha: forward to %s: ha: test op: %v (on leader): %v", p.addr, s, s)
		if err == nil || err.Error() != want {
			t.Fatalf("%v: got %v\nwant %s", s, err, want)
		}
		for j, other := range sentinels {
			if want := j == i; errors.Is(err, other) != want {
				t.Errorf("%v: errors.Is(%v) = %v", s, other, !want)
			}
		}
		if errors.Is(err, ErrNoRoute) {
			t.Errorf("%v: wraps ErrNoRoute", s)
		}
		if logs := p.logs.take(); logs != "" {
			t.Errorf("%v: the leader logged a sentinel: %s", s, logs)
		}
	}

	// An error wrapping two sentinels keeps "not leader": the sender may
	// retry only that, and it must not be hidden.
	respond(fmt.Errorf("ha: both: %w: %w", ErrUnavailable, ErrNotLeader))
	if _, err := p.fwd.Forward(ctx, p.addr, ForwardCommit, nil); !errors.Is(err, ErrNotLeader) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("two sentinels: %v", err)
	}

	// Not one of ours: outcome unknown, logged once on the leader.
	respond(errors.New("disk on fire"))
	_, err = p.fwd.Forward(ctx, p.addr, ForwardMembership, nil)
	if want := fmt.Sprintf("ha: forward to %s: disk on fire (on leader): ha: unavailable", p.addr); err == nil || err.Error() != want {
		t.Fatalf("unknown error: got %v\nwant %s", err, want)
	}
	if logs := p.logs.take(); !strings.Contains(logs, `msg="ha: forwarded request failed" kind=3 err="disk on fire"`) {
		t.Fatalf("leader log: %q", logs)
	}
	// A cancelled or timed-out request is not our fault: not logged.
	respond(fmt.Errorf("ha: commit: %w", context.Canceled))
	if _, err = p.fwd.Forward(ctx, p.addr, ForwardCommit, nil); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotLeader) {
		t.Fatalf("cancelled on the leader: %v", err)
	}
	if logs := p.logs.take(); logs != "" {
		t.Fatalf("leader logged a cancellation: %s", logs)
	}
}

// TestPeerWire checks what is on the wire: a kind above 255 is refused
// as invalid in the response, and a sender of the older protocol (no
// protocol field) gets a plain gRPC failure, which it takes as "outcome
// unknown", never a status code carrying ha's meaning.
func TestPeerWire(t *testing.T) {
	p := startPeer(t, func(context.Context, byte, []byte) ([]byte, error) {
		return nil, fmt.Errorf("ha: forwarded request: %w", ErrNotLeader)
	})
	cc, err := grpc.NewClient("passthrough:///"+p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := tier0v1.NewClusterPeerClient(cc)
	ctx := context.Background()

	resp, err := c.Forward(ctx, &tier0v1.ForwardRequest{Kind: 256, Protocol: peerProtocol})
	if err != nil || resp.GetError().GetKind() != "invalid" || resp.GetError().GetMessage() != "ha: forward kind 256: ha: invalid argument" || resp.GetPayload() != nil {
		t.Fatalf("kind 256: %v, %v", resp, err)
	}
	resp, err = c.Forward(ctx, &tier0v1.ForwardRequest{Kind: 2, Protocol: peerProtocol})
	if err != nil || resp.GetError().GetKind() != "not-leader" || resp.GetError().GetMessage() != "ha: forwarded request: ha: not the leader" {
		t.Fatalf("protocol 1: %v, %v", resp, err)
	}
	_, err = c.Forward(ctx, &tier0v1.ForwardRequest{Kind: 2})
	if st, _ := status.FromError(err); st.Code() != codes.Unknown || st.Message() != "ha: forwarded request: ha: not the leader" {
		t.Fatalf("protocol 0: %v", err)
	}
}

// TestPeerTransportFailures: no connection means nothing was sent
// (ErrNoRoute: retried); a connection lost after sending has an unknown
// outcome (ErrUnavailable: not retried).
func TestPeerTransportFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	var d net.Dialer
	fwd := NewPeerForwarder(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) })
	defer fwd.Close()
	if _, err := fwd.Forward(context.Background(), closed, ForwardApply, nil); !errors.Is(err, ErrNoRoute) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("no listener: %v, want ErrNoRoute", err)
	}

	started := make(chan struct{})
	p := startPeer(t, func(ctx context.Context, _ byte, _ []byte) ([]byte, error) {
		close(started)
		<-ctx.Done() // the leader is still working on it when the connection goes
		return nil, ctx.Err()
	})
	errc := make(chan error, 1)
	go func() {
		_, err := p.fwd.Forward(context.Background(), p.addr, ForwardCommit, []byte("[]"))
		errc <- err
	}()
	<-started
	p.srv.Stop() // closes the connection mid-call
	select {
	case err := <-errc:
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNoRoute) || errors.Is(err, ErrNotLeader) {
			t.Fatalf("connection lost mid-call: %v, want ErrUnavailable only", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("forward did not return after the connection was lost")
	}
}

// TestFSMResponseRoundTrip: a forwarded apply's FSM error keeps its
// sentinel; an error without one stays without (api answers Internal).
func TestFSMResponseRoundTrip(t *testing.T) {
	for _, s := range sentinels {
		b, err := encodeResponse(nil, fmt.Errorf("ha: create entry: %w", s))
		if err != nil {
			t.Fatal(err)
		}
		_, got := decodeResponse(b)
		if want := fmt.Sprintf("ha: create entry: %v (on leader): %v", s, s); got == nil || got.Error() != want || !errors.Is(got, s) {
			t.Errorf("%v: got %v, want %s", s, got, want)
		}
	}
	b, err := encodeResponse(errors.New("odd"), nil) // an FSM error returned as the response value
	if err != nil {
		t.Fatal(err)
	}
	if _, got := decodeResponse(b); got == nil || got.Error() != "ha: forward: leader: odd" || errorKind(got) != "" {
		t.Errorf("plain error: %v", got)
	}
	b, err = encodeResponse(Entry{ID: "e1", Agent: "a"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := decodeResponse(b); err != nil || v.(Entry).ID != "e1" {
		t.Errorf("entry: %+v, %v", v, err)
	}
}

// TestForwardRetryRule runs the rule of DESIGN.md "Forwarding" over the
// real peer service between TLS nodes: a leader's "not leader" (nothing
// proposed) is retried once; "unavailable" or any other failure (outcome
// unknown) is not; every other sentinel reaches the caller as is. The
// follower is a non-voter, so leadership cannot move during the test (on a
// loaded machine it would, and a retry could then run locally).
func TestForwardRetryRule(t *testing.T) {
	short := func(c *Config) { c.ApplyTimeout = 2 * time.Second }
	nodes, _, ca, tap := startTLSCluster(t, 1, short)
	leader := nodes[0]
	follower, ftr := newTLSNode(t, ca, tap, "n2", false, short)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := leader.raft.AddNonvoter("n2", ftr.LocalAddr(), 0, 5*time.Second).Error(); err != nil {
		t.Fatalf("add non-voter: %v", err)
	}
	if err := follower.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	notLeader := fmt.Errorf("test: stepping down: %w", ErrNotLeader)

	// An admin write (ForwardApply).
	before := tap.set(notLeader)
	if _, err := follower.CreateEntry(ctx, Entry{Agent: "a", SPIFFEID: "spiffe://example.org/retried"}); err != nil {
		t.Fatalf("create entry after not-leader: %v", err)
	}
	if n := tap.count() - before; n != 2 {
		t.Fatalf("not-leader: %d forwards, want 2 (retried once)", n)
	}
	for _, refuse := range []error{fmt.Errorf("test: lost after proposing: %w", ErrUnavailable), errors.New("test: boom")} {
		before = tap.set(refuse)
		_, err := follower.CreateEntry(ctx, Entry{Agent: "a", SPIFFEID: "spiffe://example.org/not-retried"})
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotLeader) {
			t.Fatalf("%v: got %v, want ErrUnavailable", refuse, err)
		}
		if n := tap.count() - before; n != 1 {
			t.Fatalf("%v: %d forwards, want 1 (not retried)", refuse, n)
		}
	}
	// Twice "not leader": retried once only, then Unavailable.
	before = tap.set(notLeader, notLeader)
	if _, err := follower.CreateEntry(ctx, Entry{Agent: "a", SPIFFEID: "spiffe://example.org/twice"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("not-leader twice: %v", err)
	}
	if n := tap.count() - before; n != 2 {
		t.Fatalf("not-leader twice: %d forwards, want 2", n)
	}

	// A record batch (ForwardCommit, through the committer).
	before = tap.set(notLeader)
	if err := follower.Commit(ctx, []*record.Record{testRecord("r1")}); err != nil {
		t.Fatalf("commit after not-leader: %v", err)
	}
	if n := tap.count() - before; n != 2 {
		t.Fatalf("commit not-leader: %d forwards, want 2", n)
	}
	before = tap.set(fmt.Errorf("test: lost after proposing: %w", ErrUnavailable))
	if err := follower.Commit(ctx, []*record.Record{testRecord("r2")}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("commit unknown outcome: %v", err)
	}
	if n := tap.count() - before; n != 1 {
		t.Fatalf("commit unknown outcome: %d forwards, want 1", n)
	}

	// Sentinels from the real leader, not injected: the FSM's (in the
	// apply response) and the peer handler's (membership).
	tap.set()
	if _, err := follower.CreateEntry(ctx, Entry{Agent: "a", SPIFFEID: "spiffe://example.org/retried"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate entry: %v, want ErrExists", err)
	}
	if err := follower.TransferLeadership(ctx, "nobody"); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("transfer to a non-member: %v, want ErrNotFound", err)
	}
	if err := follower.DeleteEntry(ctx, "no-such-entry"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete missing entry: %v, want ErrNotFound", err)
	}
	waitFor(t, "replication", func() bool {
		return len(follower.ListEntries("a")) == 1 && certCount(follower) == 1
	})
}
