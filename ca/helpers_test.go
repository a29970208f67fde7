package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/internal/testenv"
)

var (
	testTD     = spiffeid.RequireTrustDomainFromString("example.org")
	testAgent  = spiffeid.RequireFromString("spiffe://example.org/tier0/agent/a1")
	testWLID   = spiffeid.RequireFromString("spiffe://example.org/ns/prod/sa/web")
	testWLID2  = spiffeid.RequireFromString("spiffe://example.org/ns/prod/sa/db")
	errJournal = errors.New("journal: quorum lost")
)

// loadKey reads a pre-generated PKCS#8 test key from testdata/keys.
func loadKey(t testing.TB, name string) crypto.Signer {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "keys", name))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", name)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(crypto.Signer)
}

func newP256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testPKI is a real two-level PKI: root -> intermediate (the SVID issuer).
type testPKI struct {
	root      *x509.Certificate
	rootKey   crypto.Signer
	inter     *x509.Certificate
	interKey  crypto.Signer
	issuer    Issuer // the intermediate
	rootIssue Issuer // the root itself (Chain empty)
}

func newPKI(t testing.TB, now time.Time, interLife time.Duration) *testPKI {
	t.Helper()
	p := &testPKI{rootKey: newP256(t), interKey: newP256(t)}
	var err error
	if p.root, err = NewRoot(testTD, p.rootKey, 24*time.Hour, now); err != nil {
		t.Fatal(err)
	}
	p.rootIssue = Issuer{Signer: p.rootKey, Cert: p.root}
	if p.inter, err = NewIntermediate(testTD, p.rootIssue, p.interKey.Public(), interLife, now); err != nil {
		t.Fatal(err)
	}
	p.issuer = Issuer{Signer: p.interKey, Cert: p.inter, Chain: []*x509.Certificate{p.inter}}
	return p
}

// csrOpts tweaks a CSR template.
type csrOpts func(*x509.CertificateRequest)

func makeCSR(t testing.TB, key crypto.Signer, uris []string, opts ...csrOpts) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	for _, o := range opts {
		o(tmpl)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// fakeJournal is an in-memory hash-chained journal.
type fakeJournal struct {
	mu    sync.Mutex
	err   error
	calls int
	recs  []*record.Record
	prev  []byte
	now   time.Time
}

func (j *fakeJournal) Commit(_ context.Context, recs []*record.Record) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.calls++
	if j.err != nil {
		return j.err
	}
	if j.prev == nil {
		j.prev = record.Genesis
	}
	for _, r := range recs {
		r.Seq = uint64(len(j.recs) + 1)
		r.CommittedAt = record.Truncate(j.now)
		j.prev = r.Seal(j.prev)
		j.recs = append(j.recs, r)
	}
	return nil
}

func (j *fakeJournal) records() []*record.Record {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]*record.Record(nil), j.recs...)
}

// fakeAuthz grants exactly the listed (agent, id) pairs.
type fakeAuthz struct {
	grants map[string]Grant // key: agent + " " + id
	err    error
}

func (a *fakeAuthz) Authorize(agent, id spiffeid.ID) (Grant, error) {
	if a.err != nil {
		return Grant{}, a.err
	}
	if g, ok := a.grants[agent.String()+" "+id.String()]; ok {
		return g, nil
	}
	return Grant{}, fmt.Errorf("no entry grants %s to %s: %w", id, agent, ErrPermissionDenied)
}

func grantAll(agent spiffeid.ID, ttl time.Duration, ids ...spiffeid.ID) *fakeAuthz {
	a := &fakeAuthz{grants: map[string]Grant{}}
	for i, id := range ids {
		a.grants[agent.String()+" "+id.String()] = Grant{EntryID: fmt.Sprintf("entry-%d", i), TTL: ttl}
	}
	return a
}

type testEnv struct {
	pki  *testPKI
	ca   *CA
	j    *fakeJournal
	now  time.Time
	logs *testenv.Buffer
}

// newEnv builds a CA over a fresh PKI with a frozen clock at the real time
// (so TLS handshakes, which use the wall clock, accept the SVIDs).
func newEnv(t testing.TB, mod func(*Config)) *testEnv {
	t.Helper()
	now := time.Now().Truncate(time.Second)
	e := &testEnv{now: now, pki: newPKI(t, now, 4*time.Hour), j: &fakeJournal{now: now}, logs: &testenv.Buffer{}}
	cfg := Config{
		TrustDomain: testTD,
		Issuer:      e.pki.issuer,
		NodeID:      "node-1",
		Authorizer:  grantAll(testAgent, 0, testWLID, testWLID2),
		Journal:     e.j,
		Clock:       func() time.Time { return now },
		Logger:      slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.ca = c
	return e
}

var discardLogger = slog.New(slog.NewTextHandler(io.Discard, nil))
