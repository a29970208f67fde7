package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tier0-ca/tier0/api/client"
	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/roles"
)

var testTD = spiffeid.RequireTrustDomainFromString("example.org")

// fixture is an in-process tier0: a one-node ha journal in a temp dir, a
// soft-key CA and the API on loopback TLS.
type fixture struct {
	node   *ha.Node
	ca     *ca.CA
	srv    *Server
	addr   string
	bundle *x509bundle.Bundle
}

type entryAuthz struct{ node *ha.Node }

func (a entryAuthz) Authorize(agent, id spiffeid.ID) (ca.Grant, error) {
	name, ok := roles.AgentName(testTD, agent)
	if !ok {
		return ca.Grant{}, ca.ErrPermissionDenied
	}
	for _, e := range a.node.EntriesFor(name) {
		if e.SPIFFEID == id.String() {
			return ca.Grant{EntryID: e.ID, TTL: e.TTL}, nil
		}
	}
	return ca.Grant{}, ca.ErrPermissionDenied
}

// newFixture starts the fixture; opts adjust the server's Config.
func newFixture(tb testing.TB, opts ...func(*Config)) *fixture {
	tb.Helper()
	return newFixtureJournal(tb, nil, opts...)
}

// newFixtureJournal is newFixture whose CA commits through wrap(node)
// (wrap nil: the node itself).
func newFixtureJournal(tb testing.TB, wrap func(*ha.Node) ca.Journal, opts ...func(*Config)) *fixture {
	tb.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	node, err := ha.New(ctx, ha.Config{NodeID: "n1", DataDir: tb.TempDir(), Bootstrap: true, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { node.Close() })
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := node.WaitLeader(wctx); err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root, err := ca.NewRoot(testTD, rootKey, 24*time.Hour, now)
	if err != nil {
		tb.Fatal(err)
	}
	intKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	inter, err := ca.NewIntermediate(testTD, ca.Issuer{Signer: rootKey, Cert: root}, intKey.Public(), 12*time.Hour, now)
	if err != nil {
		tb.Fatal(err)
	}
	if err := node.SetBundle(ctx, [][]byte{root.Raw}, testTD.Name()); err != nil {
		tb.Fatal(err)
	}
	var journal ca.Journal = node
	if wrap != nil {
		journal = wrap(node)
	}
	issuer, err := ca.New(ca.Config{
		TrustDomain: testTD, NodeID: "n1", Authorizer: entryAuthz{node}, Journal: journal, Logger: log,
		Issuer: ca.Issuer{Signer: intKey, Cert: inter, Chain: []*x509.Certificate{inter}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	f := &fixture{node: node, ca: issuer, bundle: x509bundle.FromX509Authorities(testTD, []*x509.Certificate{root})}
	nodeID, _ := roles.NodeID(testTD, "n1")
	nodeSVID := f.mintSVID(tb, nodeID)
	cfg := Config{TrustDomain: testTD, Issuer: issuer, State: node, SVID: nodeSVID, Logger: log}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	tb.Cleanup(func() { srv.Stop(time.Second) })
	f.srv, f.addr = srv, lis.Addr().String()
	return f
}

// mintSVID issues id directly through the CA (as the server does for its
// own credentials).
func (f *fixture) mintSVID(tb testing.TB, id spiffeid.ID) *x509svid.SVID {
	tb.Helper()
	csr, key, err := client.NewCSR(spiffeid.ID{})
	if err != nil {
		tb.Fatal(err)
	}
	res, err := f.ca.MintFor(context.Background(), spiffeid.ID{}, id, csr, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	svid, err := client.ParseChain(res.Chain, key, f.bundle)
	if err != nil {
		tb.Fatal(err)
	}
	return svid
}

// clientAs returns an API client authenticated as id.
func (f *fixture) clientAs(tb testing.TB, id spiffeid.ID) *client.Client {
	tb.Helper()
	c, err := client.New(context.Background(), client.Config{
		Addrs: []string{f.addr}, TrustDomain: testTD, Bundle: f.bundle,
		SVID: client.NewRotatingSVID(f.mintSVID(tb, id)), MaxAttempts: 1,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func (f *fixture) grant(tb testing.TB, agent, id string) {
	tb.Helper()
	if _, err := f.node.CreateEntry(context.Background(), ha.Entry{ID: agent + id, Agent: agent, SPIFFEID: id, TTL: 30 * time.Minute, CreatedAt: time.Now()}); err != nil {
		tb.Fatal(err)
	}
}
