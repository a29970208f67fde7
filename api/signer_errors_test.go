package api

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/internal/roles"
	"github.com/tier0-ca/tier0/internal/testenv"
	"github.com/tier0-ca/tier0/signer"
)

// flakySigner is a CA key whose HSM/KMS can be made to fail.
type flakySigner struct {
	key *ecdsa.PrivateKey
	mu  sync.Mutex
	err error
}

func (f *flakySigner) Public() crypto.PublicKey { return f.key.Public() }

func (f *flakySigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	f.mu.Lock()
	err := f.err
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return f.key.Sign(r, digest, opts)
}

func (f *flakySigner) fail(err error) { f.mu.Lock(); f.err = err; f.mu.Unlock() }

// useFlakySigner makes the fixture's CA issue from a new root whose key is
// a flakySigner (direct mode), trusted alongside the first root.
func useFlakySigner(t *testing.T, f *fixture) *flakySigner {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	fs := &flakySigner{key: key}
	root, err := ca.NewRoot(testTD, key, 24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	roots := [][]byte{root.Raw}
	for _, r := range f.bundle.X509Authorities() {
		roots = append(roots, r.Raw)
	}
	if err := f.node.SetBundle(context.Background(), roots, testTD.Name()); err != nil {
		t.Fatal(err)
	}
	f.bundle.AddX509Authority(root)
	if err := f.ca.SetIssuer(ca.Issuer{Signer: fs, Cert: root, Chain: []*x509.Certificate{}}); err != nil {
		t.Fatal(err)
	}
	return fs
}

// kmsDown is what a KMS outage looks like from a signer: the full error
// names the key ARN, the account and the endpoint with its credentials.
var kmsDown = &signer.UnavailableError{
	Backend: "awskms", Reason: "circuit_open", RetryAfter: 1500 * time.Millisecond,
	Err: errors.New("signer/awskms: sign with arn:aws:kms:us-east-1:111122223333:key/1234abcd: " +
		"operation error KMS: Sign, https response error: Post \"https://admin:hunter2@kms.example.com/\": KMSInternalException"),
}

var secrets = []string{"111122223333", "arn:aws", "1234abcd", "hunter2", "admin:", "kms.example.com", "KMSInternalException"}

func checkNoSecrets(t *testing.T, what, msg string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(msg, s) {
			t.Errorf("%s carries %q: %s", what, s, msg)
		}
	}
}

// TestSignerUnavailableThroughAPI: while the CA key cannot sign, an agent's
// batch answers Unavailable with the retry-after-ms hint and a client-safe
// message (no ARN, account, endpoint credentials or KMS text); the server
// log has the full error, once; a mixed batch answers per item with the
// same safe message; issuance resumes when the key does.
func TestSignerUnavailableThroughAPI(t *testing.T) {
	f := newFixture(t)
	logs := &testenv.Buffer{}
	f.srv.log = slog.New(slog.NewTextHandler(logs, nil))
	fs := useFlakySigner(t, f)
	f.grant(t, "a1", "spiffe://example.org/web")
	agentID, _ := roles.AgentID(testTD, "a1")
	c := f.clientAs(t, agentID)
	good, _, _ := client.NewCSR(spiffeid.RequireFromString("spiffe://example.org/web"))
	denied, _, _ := client.NewCSR(spiffeid.RequireFromString("spiffe://example.org/db"))
	ctx := context.Background()

	fs.fail(kmsDown)
	for range 5 {
		var trailer metadata.MD
		_, err := c.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: good}, {Csr: good}, {Csr: good}}}, grpc.Trailer(&trailer))
		st, _ := status.FromError(err)
		if st.Code() != codes.Unavailable || st.Message() != "signer: CA key unavailable (awskms: circuit_open); retry in 1.5s" {
			t.Fatalf("batch with the CA key down: %v, want Unavailable with the safe message", err)
		}
		if d, ok := client.RetryAfter(trailer); !ok || d != 1500*time.Millisecond {
			t.Fatalf("retry-after = %v, %v; want 1.5s", d, ok)
		}
	}
	// RenewAgent (MintFor) answers the same way.
	var trailer metadata.MD
	csr, _, _ := client.NewCSR(spiffeid.ID{})
	_, err := c.Agent().RenewAgent(ctx, &tier0v1.RenewAgentRequest{Csr: csr}, grpc.Trailer(&trailer))
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable {
		t.Fatalf("RenewAgent with the CA key down: %v", err)
	} else {
		checkNoSecrets(t, "RenewAgent error", st.Message())
	}
	if _, ok := client.RetryAfter(trailer); !ok {
		t.Fatal("RenewAgent: no retry-after hint")
	}
	// A batch whose other items fail for their own reasons answers per item.
	trailer = nil
	resp, err := c.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: denied}, {Csr: good}}}, grpc.Trailer(&trailer))
	if err != nil {
		t.Fatal(err)
	}
	r := resp.GetResults()
	if codes.Code(r[0].GetError().GetCode()) != codes.PermissionDenied || codes.Code(r[1].GetError().GetCode()) != codes.Unavailable {
		t.Fatalf("mixed batch: %v", r)
	}
	checkNoSecrets(t, "item error", r[1].GetError().GetMessage())
	if _, ok := client.RetryAfter(trailer); !ok {
		t.Fatal("mixed batch: no retry-after hint")
	}

	// A permanent KMS error (access denied) is our fault: Internal, generic.
	fs.fail(errors.New("signer/awskms: sign with arn:aws:kms:us-east-1:111122223333:key/1234abcd: AccessDeniedException: User: arn:aws:iam::111122223333:user/tier0 is not authorized"))
	_, err = c.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: good}}})
	if err != nil {
		t.Fatal(err)
	}
	fs.fail(nil)
	resp, err = c.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: good}}})
	if err != nil || resp.GetResults()[0].GetError() != nil {
		t.Fatalf("after the key came back: %v %v", err, resp.GetResults())
	}

	out := logs.String()
	if n := strings.Count(out, "CA key unavailable: answering Unavailable"); n != 1 {
		t.Fatalf("%d log lines for 7 unavailable calls, want 1 (rate-limited):\n%s", n, out)
	}
	if !strings.Contains(out, "111122223333") {
		t.Fatalf("server log lacks the full error:\n%s", out)
	}
}

func TestPublicMessage(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{kmsDown, "signer: CA key unavailable (awskms: circuit_open); retry in 1.5s"},
		{errors.Join(errors.New("ca: sign svid"), kmsDown), "signer: CA key unavailable (awskms: circuit_open); retry in 1.5s"},
		{errors.New("signer: kms throttled after 5 attempts: arn:aws:kms:eu-west-1:111122223333:key/x"), "signer: CA key unavailable"},
		{errors.New("store: dial postgres://tier0:s3cret@db.internal:5432/ca: refused"), "store: dial postgres://xxxxx@db.internal:5432/ca: refused"},
		{errors.New("key arn:aws:kms:eu-west-1:111122223333:key/x not usable"), "key arn:aws:(redacted) not usable"},
		{errors.New("ca: spiffe://example.org/web may not obtain x"), "ca: spiffe://example.org/web may not obtain x"},
	} {
		err := tc.err
		if strings.HasPrefix(err.Error(), "signer: kms throttled") {
			err = errors.Join(signer.ErrThrottled, err)
		}
		if got := publicMessage(err); got != tc.want {
			t.Errorf("publicMessage(%v)\n got: %s\nwant: %s", err, got, tc.want)
		}
	}
}
