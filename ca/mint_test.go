package ca

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/internal/roles"
)

func TestMintBatchRejects(t *testing.T) {
	p256 := newP256(t)
	good := makeCSR(t, p256, []string{testWLID.String()})
	badSig := append([]byte(nil), good...)
	badSig[len(badSig)-1] ^= 0x01
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)

	tests := []struct {
		name    string
		req     Request
		authz   *fakeAuthz
		wantIs  error
		wantErr string
	}{
		{"malformed", Request{CSR: []byte("not a csr")}, nil, ErrInvalidCSR,
			"ca: parse csr: malformed ASN.1 DER: invalid csr"},
		{"trailing data", Request{CSR: append(append([]byte(nil), good...), 0)}, nil, ErrInvalidCSR,
			"ca: parse csr: malformed ASN.1 DER: invalid csr"},
		{"empty", Request{}, nil, ErrInvalidCSR, "ca: csr is empty: invalid csr"},
		{"oversized", Request{CSR: make([]byte, DefaultMaxCSRBytes+1)}, nil, ErrInvalidCSR,
			"ca: csr of 16385 bytes exceeds limit of 16384 bytes: invalid csr"},
		{"bad signature", Request{CSR: badSig}, nil, ErrInvalidCSR,
			"ca: csr signature: x509: ECDSA verification failure: invalid csr"},
		{"zero uri sans", Request{CSR: makeCSR(t, p256, nil)}, nil, ErrInvalidCSR,
			"ca: csr has no URI SAN, want exactly one: invalid csr"},
		{"two uri sans", Request{CSR: makeCSR(t, p256, []string{testWLID.String(), testWLID2.String()})}, nil, ErrInvalidCSR,
			"ca: csr has 2 URI SANs, want exactly one: invalid csr"},
		{"dns san", Request{CSR: makeCSR(t, p256, []string{testWLID.String()}, func(r *x509.CertificateRequest) { r.DNSNames = []string{"web.example.org"} })}, nil, ErrInvalidCSR,
			"ca: csr has 1 DNS/IP/email SANs, want none: invalid csr"},
		{"ip san", Request{CSR: makeCSR(t, p256, []string{testWLID.String()}, func(r *x509.CertificateRequest) { r.IPAddresses = []net.IP{net.IPv4(10, 0, 0, 1)} })}, nil, ErrInvalidCSR,
			"ca: csr has 1 DNS/IP/email SANs, want none: invalid csr"},
		{"email san", Request{CSR: makeCSR(t, p256, []string{testWLID.String()}, func(r *x509.CertificateRequest) { r.EmailAddresses = []string{"a@example.org"} })}, nil, ErrInvalidCSR,
			"ca: csr has 1 DNS/IP/email SANs, want none: invalid csr"},
		{"non-spiffe uri", Request{CSR: makeCSR(t, p256, []string{"https://example.org/ns/prod"})}, nil, ErrInvalidID,
			`ca: csr URI SAN "https://example.org/ns/prod": scheme is missing or invalid: invalid spiffe id`},
		{"foreign trust domain", Request{CSR: makeCSR(t, p256, []string{"spiffe://other.org/ns/prod/sa/web"})}, nil, ErrInvalidID,
			`ca: spiffe id "spiffe://other.org/ns/prod/sa/web" is not in trust domain "example.org": invalid spiffe id`},
		{"trust domain id", Request{CSR: makeCSR(t, p256, []string{"spiffe://example.org"})}, nil, ErrInvalidID,
			`ca: spiffe id "spiffe://example.org" has no path: invalid spiffe id`},
		{"reserved admin", Request{CSR: makeCSR(t, p256, []string{"spiffe://example.org/tier0/admin"})},
			grantAll(testAgent, 0, roles.AdminID(testTD)), ErrInvalidID,
			`ca: spiffe id "spiffe://example.org/tier0/admin" uses reserved path /tier0: invalid spiffe id`},
		{"reserved agent upper case", Request{CSR: makeCSR(t, p256, []string{"spiffe://example.org/TIER0/agent/x"})}, nil, ErrInvalidID,
			`ca: spiffe id "spiffe://example.org/TIER0/agent/x" uses reserved path /tier0: invalid spiffe id`},
		{"not granted", Request{CSR: makeCSR(t, p256, []string{"spiffe://example.org/ns/prod/sa/other"})}, nil, ErrPermissionDenied,
			"ca: spiffe://example.org/tier0/agent/a1 may not obtain spiffe://example.org/ns/prod/sa/other: no entry grants spiffe://example.org/ns/prod/sa/other to spiffe://example.org/tier0/agent/a1: permission denied"},
		{"authorizer failure", Request{CSR: good}, &fakeAuthz{err: errors.New("state unavailable")}, nil,
			"ca: authorize spiffe://example.org/tier0/agent/a1 for spiffe://example.org/ns/prod/sa/web: state unavailable"},
		{"ttl too short", Request{CSR: good, TTL: 10 * time.Minute}, nil, ErrInvalidTTL,
			"ca: ttl 10m0s outside bounds [15m0s, 1h0m0s]: invalid ttl"},
		{"ttl too long", Request{CSR: good, TTL: 61 * time.Minute}, nil, ErrInvalidTTL,
			"ca: ttl 1h1m0s outside bounds [15m0s, 1h0m0s]: invalid ttl"},
		{"grant ttl too long", Request{CSR: good}, grantAll(testAgent, 2*time.Hour, testWLID), ErrInvalidTTL,
			"ca: ttl 2h0m0s outside bounds [15m0s, 1h0m0s]: invalid ttl"},
		{"p-224 key", Request{CSR: makeCSR(t, loadKey(t, "p224.pem"), []string{testWLID.String()})}, nil, ErrWeakKey,
			"ca: ecdsa curve P-224 not allowed, want P-256: weak or unsupported key"},
		{"rsa-1024 key", Request{CSR: makeCSR(t, loadKey(t, "rsa1024.pem"), []string{testWLID.String()})}, nil, ErrWeakKey,
			"ca: rsa key of 1024 bits not allowed, want 2048..8192: weak or unsupported key"},
		{"ed25519 key", Request{CSR: makeCSR(t, edKey, []string{testWLID.String()})}, nil, ErrWeakKey,
			"ca: public key type ed25519.PublicKey not allowed, want ECDSA P-256 or RSA: weak or unsupported key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				if tt.authz != nil {
					c.Authorizer = tt.authz
				}
			})
			res, err := e.ca.MintBatch(context.Background(), testAgent, []Request{tt.req})
			if err != nil {
				t.Fatalf("MintBatch: whole-batch error %v", err)
			}
			if len(res) != 1 {
				t.Fatalf("got %d results", len(res))
			}
			r := res[0]
			if r.Err == nil || r.Err.Error() != tt.wantErr {
				t.Fatalf("error:\n got %v\nwant %s", r.Err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(r.Err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", r.Err, tt.wantIs)
			}
			if r.Chain != nil || r.Cert != nil || r.Record != nil { // ID and EntryID may be set (for the decision log)
				t.Errorf("failed result has fields set: %+v", r)
			}
			if e.j.calls != 0 || len(e.j.records()) != 0 {
				t.Errorf("journal saw %d calls, %d records; want none", e.j.calls, len(e.j.records()))
			}
			if logs := e.logs.String(); !strings.Contains(logs, "level=INFO") || !strings.Contains(logs, "caller="+testAgent.String()) {
				t.Errorf("deny not logged at INFO with caller: %q", logs)
			}
		})
	}
}

func TestMintBatchTooLarge(t *testing.T) {
	e := newEnv(t, nil)
	_, err := e.ca.MintBatch(context.Background(), testAgent, make([]Request, DefaultMaxBatch+1))
	want := "ca: batch of 257 requests exceeds limit of 256: batch too large"
	if err == nil || err.Error() != want || !errors.Is(err, ErrBatchTooLarge) {
		t.Fatalf("got %v, want %s", err, want)
	}
	if e.j.calls != 0 {
		t.Errorf("journal called")
	}
}

func TestMintBatchCancelled(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.ca.MintBatch(ctx, testAgent, []Request{{CSR: makeCSR(t, newP256(t), []string{testWLID.String()})}})
	if !errors.Is(err, context.Canceled) || err.Error() != "ca: mint batch: context canceled" {
		t.Fatalf("got %v", err)
	}
}

func TestMintBatchMixedOneCommit(t *testing.T) {
	e := newEnv(t, nil)
	reqs := []Request{
		{CSR: makeCSR(t, newP256(t), []string{testWLID.String()})},
		{CSR: makeCSR(t, newP256(t), []string{"spiffe://example.org/denied"})},
		{CSR: makeCSR(t, loadKey(t, "rsa2048.pem"), []string{testWLID2.String()}), TTL: 20 * time.Minute},
	}
	res, err := e.ca.MintBatch(context.Background(), testAgent, reqs)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || res[2].Err != nil || !errors.Is(res[1].Err, ErrPermissionDenied) {
		t.Fatalf("errors: %v / %v / %v", res[0].Err, res[1].Err, res[2].Err)
	}
	if e.j.calls != 1 {
		t.Fatalf("journal calls = %d, want 1", e.j.calls)
	}
	recs := e.j.records()
	if len(recs) != 2 || recs[0] != res[0].Record || recs[1] != res[2].Record {
		t.Fatalf("journal records do not match results")
	}
	if got := res[2].Cert.NotAfter.Sub(e.now); got != 20*time.Minute {
		t.Errorf("requested ttl: lifetime %s, want 20m", got)
	}
	if got := res[0].Cert.NotAfter.Sub(e.now); got != DefaultMaxTTL {
		t.Errorf("grant ttl 0: lifetime %s, want MaxTTL", got)
	}
	if !strings.Contains(e.logs.String(), "level=DEBUG msg=\"ca: svid allowed\" caller="+testAgent.String()) {
		t.Errorf("allow not logged at DEBUG with caller: %s", e.logs.String())
	}
}

func TestMintBatchGrantTTL(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Authorizer = grantAll(testAgent, 20*time.Minute, testWLID) })
	res, err := e.ca.MintBatch(context.Background(), testAgent, []Request{{CSR: makeCSR(t, newP256(t), []string{testWLID.String()})}})
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	if got := res[0].Cert.NotAfter.Sub(e.now); got != 20*time.Minute {
		t.Errorf("lifetime %s, want grant's 20m", got)
	}
}

func TestMintBatchJournalFailure(t *testing.T) {
	e := newEnv(t, nil)
	e.j.err = errJournal
	reqs := []Request{
		{CSR: makeCSR(t, newP256(t), []string{testWLID.String()})},
		{CSR: makeCSR(t, newP256(t), []string{testWLID2.String()})},
		{CSR: []byte("junk")},
	}
	res, err := e.ca.MintBatch(context.Background(), testAgent, reqs)
	if err != nil {
		t.Fatal(err)
	}
	want := "ca: commit 2 issuance records: journal: quorum lost"
	for i, r := range res[:2] {
		if r.Err == nil || r.Err.Error() != want || !errors.Is(r.Err, errJournal) {
			t.Errorf("item %d: err %v, want %s", i, r.Err, want)
		}
		if r.Chain != nil || r.Cert != nil || r.Record != nil {
			t.Errorf("item %d: chain returned despite journal failure", i)
		}
	}
	if !errors.Is(res[2].Err, ErrInvalidCSR) {
		t.Errorf("item 2: %v", res[2].Err)
	}
	if e.j.calls != 1 {
		t.Errorf("journal calls = %d, want 1", e.j.calls)
	}
}

func TestMintFor(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	agent := testAgent
	key := newP256(t)

	// Reserved IDs are allowed; a CSR without URI SAN takes the given ID.
	r, err := e.ca.MintFor(ctx, spiffeid.ID{}, agent, makeCSR(t, key, nil), 0)
	if err != nil {
		t.Fatal(err)
	}
	checkSVID(t, e, r, agent, e.pki.issuer)
	if r.Record.AgentID != "" {
		t.Errorf("AgentID = %q, want empty for zero caller", r.Record.AgentID)
	}
	admin := roles.AdminID(testTD)
	r, err = e.ca.MintFor(ctx, agent, admin, makeCSR(t, key, []string{admin.String()}), 20*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if r.Record.AgentID != agent.String() || r.Cert.NotAfter.Sub(e.now) != 20*time.Minute {
		t.Errorf("record %+v", r.Record)
	}

	bad := []struct {
		name, want string
		id         spiffeid.ID
		csr        []byte
		ttl        time.Duration
	}{
		{"uri mismatch", "ca: csr URI SAN spiffe://example.org/ns/prod/sa/web does not match spiffe://example.org/tier0/admin: invalid csr",
			admin, makeCSR(t, key, []string{testWLID.String()}), 0},
		{"foreign id", `ca: spiffe id "spiffe://other.org/tier0/admin" is not in trust domain "example.org": invalid spiffe id`,
			roles.AdminID(spiffeid.RequireTrustDomainFromString("other.org")), makeCSR(t, key, nil), 0},
		{"zero id", "ca: spiffe id is empty: invalid spiffe id", spiffeid.ID{}, makeCSR(t, key, nil), 0},
		{"ttl", "ca: ttl 2h0m0s outside bounds [15m0s, 1h0m0s]: invalid ttl", admin, makeCSR(t, key, nil), 2 * time.Hour},
		{"weak key", "ca: rsa key of 1024 bits not allowed, want 2048..8192: weak or unsupported key",
			admin, makeCSR(t, loadKey(t, "rsa1024.pem"), nil), 0},
	}
	before := len(e.j.records())
	for _, tt := range bad {
		if _, err := e.ca.MintFor(ctx, agent, tt.id, tt.csr, tt.ttl); err == nil || err.Error() != tt.want {
			t.Errorf("%s: got %v\nwant %s", tt.name, err, tt.want)
		}
	}
	if got := len(e.j.records()); got != before {
		t.Errorf("failed MintFor wrote %d records", got-before)
	}
	e.j.err = errJournal
	if _, err := e.ca.MintFor(ctx, agent, admin, makeCSR(t, key, nil), 0); !errors.Is(err, errJournal) {
		t.Errorf("journal failure: %v", err)
	}
}
