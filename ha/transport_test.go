package ha

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tier0-ca/tier0/api/client/clienttest"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/internal/roles"
)

// peerTap wraps every node's forward handler in a test cluster: it counts
// the forwards served and answers the next ones with refuse's errors
// instead, in order (the leader refusing, without proposing).
type peerTap struct {
	mu     sync.Mutex
	served int
	refuse []error
}

func (p *peerTap) wrap(h forwardHandler) forwardHandler {
	return func(ctx context.Context, kind byte, payload []byte) ([]byte, error) {
		p.mu.Lock()
		p.served++
		var err error
		if len(p.refuse) > 0 {
			err, p.refuse = p.refuse[0], p.refuse[1:]
		}
		p.mu.Unlock()
		if err != nil {
			return nil, err
		}
		return h(ctx, kind, payload)
	}
}

func (p *peerTap) set(refuse ...error) (served int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = refuse
	return p.served
}

func (p *peerTap) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.served
}

// startTLSCluster starts size nodes over real mTLS transports on loopback;
// they forward to each other with PeerForwarder through the ClusterPeer
// service on the raft port.
func startTLSCluster(t *testing.T, size int, mod ...func(*Config)) ([]*Node, []*TLSTransport, *clienttest.CA, *peerTap) {
	t.Helper()
	ca := clienttest.NewCA(t, "example.org")
	tap := &peerTap{}
	nodes := make([]*Node, size)
	trans := make([]*TLSTransport, size)
	for i := range nodes {
		nodes[i], trans[i] = newTLSNode(t, ca, tap, fmt.Sprintf("n%d", i+1), i == 0, mod...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := nodes[0].WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < size; i++ {
		// Joining through a follower is forwarded to the leader.
		via := nodes[0]
		if i > 1 {
			via = nodes[1]
		}
		if err := via.AddVoter(ctx, nodes[i].cfg.NodeID, string(trans[i].LocalAddr())); err != nil {
			t.Fatalf("add voter %d: %v", i, err)
		}
	}
	for _, n := range nodes {
		if err := n.WaitLeader(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return nodes, trans, ca, tap
}

// newTLSNode starts one node on a TLS transport with its node SVID from ca,
// a PeerForwarder, and the peer service (its handler wrapped by tap).
func newTLSNode(t *testing.T, ca *clienttest.CA, tap *peerTap, id string, bootstrap bool, mod ...func(*Config)) (*Node, *TLSTransport) {
	t.Helper()
	svid := ca.Issue(t, spiffeid.RequireFromSegments(ca.TD, "tier0", "node", id), time.Hour)
	tr, err := NewTLSTransport(TLSConfig{BindAddr: "127.0.0.1:0", TrustDomain: ca.TD, SVID: staticSVID{svid}, Bundle: ca.Bundle, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	fwd := NewPeerForwarder(tr.DialPeer)
	t.Cleanup(func() { _ = fwd.Close() })
	cfg := Config{NodeID: id, DataDir: t.TempDir(), Transport: tr, Forwarder: fwd,
		Bootstrap: bootstrap, Logger: testLogger(t), tune: fastRaft}
	for _, m := range mod {
		m(&cfg)
	}
	n, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	peer := newPeerServer(tap.wrap(n.handleForward), testLogger(t))
	go func() { _ = peer.Serve(tr.PeerListener()) }()
	t.Cleanup(peer.Stop)
	return n, tr
}

type staticSVID struct{ s *x509svid.SVID }

func (s staticSVID) GetX509SVID() (*x509svid.SVID, error) { return s.s, nil }

func TestTLSClusterForwarding(t *testing.T) {
	nodes, _, _, tap := startTLSCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Records committed on followers are forwarded, sealed by the leader.
	var wg sync.WaitGroup
	errs := make(chan error, 60)
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- nodes[1+i%2].Commit(ctx, []*record.Record{testRecord("a")})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// An admin write on a follower is forwarded; its typed response comes back.
	e, err := nodes[2].CreateEntry(ctx, Entry{Agent: "a", SPIFFEID: "spiffe://example.org/x"})
	if err != nil || e.ID == "" {
		t.Fatalf("forwarded create entry: %+v, %v", e, err)
	}
	if _, err := nodes[1].CreateEntry(ctx, Entry{Agent: "a", SPIFFEID: "spiffe://example.org/x"}); !errors.Is(err, ErrExists) {
		t.Fatalf("forwarded duplicate entry: %v, want ErrExists", err)
	}
	waitFor(t, "replication", func() bool {
		for _, n := range nodes {
			if certCount(n) != 60 || len(n.ListEntries("")) != 1 {
				return false
			}
		}
		return true
	})
	if served := tap.count(); served < 2 {
		t.Fatalf("forwards: %d", served)
	}
	verifyChain(t, nodes[0].Tail(0, 100), 1, record.Genesis)
}

// TestTLSTransportRefusesNonNodes: a peer without a node SVID of the trust
// domain fails the handshake (no certificate, an agent SVID, a node SVID
// from another CA).
func TestTLSTransportRefusesNonNodes(t *testing.T) {
	ca := clienttest.NewCA(t, "example.org")
	node := ca.Issue(t, spiffeid.RequireFromSegments(ca.TD, "tier0", "node", "n1"), time.Hour)
	tr, err := NewTLSTransport(TLSConfig{BindAddr: "127.0.0.1:0", TrustDomain: ca.TD, SVID: staticSVID{node}, Bundle: ca.Bundle, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	addr := string(tr.LocalAddr())
	other := clienttest.NewCA(t, "example.org")
	cases := []struct {
		name string
		cfg  *tls.Config
	}{
		{"plain TLS client", &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{ProtoRaft}}}, //nolint:gosec // the test client does not care who the server is
		{"agent SVID", tlsconfig.MTLSClientConfig(staticSVID{ca.Issue(t, spiffeid.RequireFromSegments(ca.TD, "tier0", "agent", "n1"), time.Hour)}, ca.Bundle, tlsconfig.AuthorizeAny())},
		{"admin SVID", tlsconfig.MTLSClientConfig(staticSVID{ca.Issue(t, spiffeid.RequireFromSegments(ca.TD, "tier0", "admin"), time.Hour)}, ca.Bundle, tlsconfig.AuthorizeAny())},
		{"node SVID of another CA", tlsconfig.MTLSClientConfig(staticSVID{other.Issue(t, spiffeid.RequireFromSegments(ca.TD, "tier0", "node", "n2"), time.Hour)}, ca.Bundle, tlsconfig.AuthorizeAny())},
		// A member that did not renew its node SVID after a long stop
		// (internal/server re-issues it offline when it can) stays out.
		{"expired node SVID", tlsconfig.MTLSClientConfig(staticSVID{ca.Issue(t, spiffeid.RequireFromSegments(ca.TD, "tier0", "node", "n2"), -time.Minute)}, ca.Bundle, tlsconfig.AuthorizeAny())},
		{"node path with a suffix", tlsconfig.MTLSClientConfig(staticSVID{ca.Issue(t, spiffeid.RequireFromSegments(ca.TD, "tier0", "node", "n2", "x"), time.Hour)}, ca.Bundle, tlsconfig.AuthorizeAny())},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.NextProtos = []string{ProtoRaft}
			if !refused(addr, tc.cfg) {
				t.Fatal("handshake accepted")
			}
		})
	}
	t.Run("node SVID accepted", func(t *testing.T) {
		cfg := tlsconfig.MTLSClientConfig(staticSVID{ca.Issue(t, spiffeid.RequireFromSegments(ca.TD, "tier0", "node", "n2"), time.Hour)}, ca.Bundle, roles.AuthorizeNode(ca.TD))
		cfg.NextProtos = []string{ProtoRaft}
		if refused(addr, cfg) {
			t.Fatal("node refused")
		}
	})
}

// refused dials and reports whether the server rejected the handshake. In
// TLS 1.3 the client finishes first, so a rejection shows on the first read.
func refused(addr string, cfg *tls.Config) bool {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return true
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false // still open: accepted, waiting for raft traffic
	}
	return true
}
