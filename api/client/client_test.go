package client

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tier0-ca/tier0/api/client/clienttest"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

type env struct {
	ca    *clienttest.CA
	fake  *clienttest.Server
	agent *RotatingSVID
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ca := clienttest.NewCA(t, "example.org")
	return &env{
		ca:    ca,
		fake:  clienttest.NewServer(ca),
		agent: NewRotatingSVID(ca.Issue(t, spiffeid.RequireFromString("spiffe://example.org/tier0/agent/a1"), time.Hour)),
	}
}

// sleeps records the waits of a Client instead of sleeping.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return ctx.Err()
}

func (e *env) client(t *testing.T, addrs []string, maxAttempts int) (*Client, *sleeps) {
	t.Helper()
	c, err := New(context.Background(), Config{Addrs: addrs, TrustDomain: e.ca.TD, Bundle: e.ca.Bundle, SVID: e.agent, MaxAttempts: maxAttempts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &sleeps{}
	c.pick = func(int) int { return 0 }
	c.sleep = s.sleep
	return c, s
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestFailoverToSecondAddress(t *testing.T) {
	e := newEnv(t)
	live := e.fake.Start(t, "n2")
	c, waits := e.client(t, []string{clienttest.DeadAddr(t), live}, 0)
	for i := range 3 {
		if _, err := c.Agent().GetBundle(testCtx(t), &tier0v1.GetBundleRequest{}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if got := e.fake.Calls("GetBundle"); got != 3 {
		t.Fatalf("live server got %d calls, want 3", got)
	}
	if len(waits.d) != 0 {
		t.Fatalf("failover waited %v, want no wait before the second address", waits.d)
	}
}

func TestFailoverAllDown(t *testing.T) {
	e := newEnv(t)
	c, waits := e.client(t, []string{clienttest.DeadAddr(t), clienttest.DeadAddr(t)}, 5)
	_, err := c.Agent().GetBundle(testCtx(t), &tier0v1.GetBundleRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want Unavailable", err)
	}
	// 5 attempts over 2 addresses: a backoff after each full round (2 rounds).
	if len(waits.d) != 2 || waits.d[0] < 160*time.Millisecond || waits.d[0] > 240*time.Millisecond ||
		waits.d[1] < 320*time.Millisecond || waits.d[1] > 480*time.Millisecond {
		t.Fatalf("waits %v, want ~200ms then ~400ms", waits.d)
	}
}

func TestNoRetryOnPermissionDenied(t *testing.T) {
	e := newEnv(t)
	e.fake.SetHook(func(context.Context, string) error { return status.Error(codes.PermissionDenied, "no") })
	c, _ := e.client(t, []string{e.fake.Start(t, "n1"), e.fake.Start(t, "n2")}, 0)
	_, err := c.Agent().GetBundle(testCtx(t), &tier0v1.GetBundleRequest{})
	if status.Code(err) != codes.PermissionDenied || e.fake.Calls("GetBundle") != 1 {
		t.Fatalf("got %v after %d calls, want PermissionDenied after 1", err, e.fake.Calls("GetBundle"))
	}
}

// exhaust makes the first n calls fail with ResourceExhausted and, when
// hint is not empty, a retry-after-ms trailer.
func exhaust(n int, hint string) func(ctx context.Context, method string) error {
	return refuse(n, codes.ResourceExhausted, hint)
}

func TestRetryAfterHonoured(t *testing.T) {
	e := newEnv(t)
	e.fake.SetHook(exhaust(2, "1000"))
	c, waits := e.client(t, []string{e.fake.Start(t, "n1"), e.fake.Start(t, "n2")}, 0)
	if _, err := c.Agent().GetBundle(testCtx(t), &tier0v1.GetBundleRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := e.fake.Calls("GetBundle"); got != 3 {
		t.Fatalf("got %d attempts, want 3", got)
	}
	// n1 refuses: the retry goes at once to n2, whose gate is open; n2
	// refuses too: the third attempt waits for n1's gate.
	if len(waits.d) != 1 {
		t.Fatalf("waited %v, want 1 wait", waits.d)
	}
	for _, d := range waits.d {
		// +-20% of the time left until the gate opens (a hair under 1s).
		if d < 790*time.Millisecond || d > 1200*time.Millisecond {
			t.Fatalf("wait %v outside 1s +-20%%", d)
		}
	}
}

func TestRetryAfterHoldsOtherCalls(t *testing.T) {
	e := newEnv(t)
	e.fake.SetHook(exhaust(1, "2000"))
	c, waits := e.client(t, []string{e.fake.Start(t, "n1")}, 1)
	// The refused call is not retried (one attempt), but the hint holds the
	// client: the next call, of any method, waits for it before it is sent.
	if _, err := c.Agent().GetBundle(testCtx(t), &tier0v1.GetBundleRequest{}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("first call: %v, want ResourceExhausted", err)
	}
	if len(waits.d) != 0 {
		t.Fatalf("waited %v before the refusal", waits.d)
	}
	if _, err := c.Agent().GetBundle(testCtx(t), &tier0v1.GetBundleRequest{}); err != nil {
		t.Fatal(err)
	}
	if len(waits.d) != 1 || waits.d[0] < 1500*time.Millisecond || waits.d[0] > 2400*time.Millisecond {
		t.Fatalf("second call waited %v, want one wait of 2s +-20%%", waits.d)
	}
	if got := e.fake.Calls("GetBundle"); got != 2 {
		t.Fatalf("server saw %d calls, want 2", got)
	}
}

func TestRetryAfterBoundedAttempts(t *testing.T) {
	e := newEnv(t)
	e.fake.SetHook(exhaust(100, "5"))
	c, _ := e.client(t, []string{e.fake.Start(t, "n1")}, 4)
	_, err := c.Agent().GetBundle(testCtx(t), &tier0v1.GetBundleRequest{})
	if status.Code(err) != codes.ResourceExhausted || e.fake.Calls("GetBundle") != 4 {
		t.Fatalf("got %v after %d attempts, want ResourceExhausted after 4", err, e.fake.Calls("GetBundle"))
	}
}

func TestResourceExhaustedWithoutHintNotRetried(t *testing.T) {
	e := newEnv(t)
	e.fake.SetHook(exhaust(1, ""))
	c, _ := e.client(t, []string{e.fake.Start(t, "n1")}, 0)
	_, err := c.Agent().GetBundle(testCtx(t), &tier0v1.GetBundleRequest{})
	if status.Code(err) != codes.ResourceExhausted || e.fake.Calls("GetBundle") != 1 {
		t.Fatalf("got %v after %d attempts, want ResourceExhausted after 1", err, e.fake.Calls("GetBundle"))
	}
}

func TestRetryAfterBoundedByContext(t *testing.T) {
	e := newEnv(t)
	e.fake.SetHook(exhaust(1, "30000"))
	c, err := New(context.Background(), Config{Addrs: []string{e.fake.Start(t, "n1")}, TrustDomain: e.ca.TD, Bundle: e.ca.Bundle, SVID: e.agent})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.Agent().GetBundle(ctx, &tier0v1.GetBundleRequest{})
	if status.Code(err) != codes.Canceled {
		t.Fatalf("got %v, want Canceled", err)
	}
	// A deadline before the gate opens: the call fails at once with the
	// server's refusal instead of sleeping until its deadline unsent...
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.Agent().GetBundle(ctx, &tier0v1.GetBundleRequest{})
	if status.Code(err) != codes.ResourceExhausted || ctx.Err() != nil {
		t.Fatalf("got %v (ctx %v), want an immediate ResourceExhausted", err, ctx.Err())
	}
	// ...and so does the next call, at the gate, before anything is sent.
	before := e.fake.Calls("GetBundle")
	_, err = c.Agent().GetBundle(ctx, &tier0v1.GetBundleRequest{})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "after this call's deadline") || e.fake.Calls("GetBundle") != before {
		t.Fatalf("held call: %v after %d new attempts, want a local ResourceExhausted", err, e.fake.Calls("GetBundle")-before)
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		md   metadata.MD
		want time.Duration
		ok   bool
	}{
		{md: metadata.Pairs(RetryAfterKey, "250"), want: 250 * time.Millisecond, ok: true},
		{md: metadata.Pairs(RetryAfterKey, "0"), want: 0, ok: true},
		{md: metadata.Pairs(RetryAfterKey, "99999999"), want: 30 * time.Second, ok: true},
		{md: metadata.Pairs(RetryAfterKey, "-1")},
		{md: metadata.Pairs(RetryAfterKey, "soon")},
		{md: nil},
	}
	for _, tt := range tests {
		got, ok := RetryAfter(tt.md)
		if got != tt.want || ok != tt.ok {
			t.Errorf("RetryAfter(%v) = %v, %v; want %v, %v", tt.md, got, ok, tt.want, tt.ok)
		}
	}
}

func TestNewConfigErrors(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		cfg  Config
		want string
	}{
		{cfg: Config{Bundle: e.ca.Bundle}, want: "client: trust domain is required"},
		{cfg: Config{TrustDomain: e.ca.TD}, want: "client: bundle is required"},
		{cfg: Config{TrustDomain: e.ca.TD, Bundle: e.ca.Bundle, Addrs: []string{"a:1", ""}}, want: "client: empty server address"},
	}
	for _, tt := range tests {
		_, err := New(context.Background(), tt.cfg)
		if err == nil || err.Error() != tt.want {
			t.Errorf("New(%+v) = %v, want %q", tt.cfg, err, tt.want)
		}
	}
}

func TestBootstrap(t *testing.T) {
	e := newEnv(t)
	e.fake.AddToken("tok", "host-1")
	addr := e.fake.Start(t, "n1")
	svid, err := Bootstrap(testCtx(t), []string{addr}, e.ca.TD, e.ca.Bundle, "tok")
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.String() != "spiffe://example.org/tier0/agent/host-1" {
		t.Fatalf("got %s", svid.ID)
	}
	// The token is single use.
	_, err = Bootstrap(testCtx(t), []string{addr}, e.ca.TD, e.ca.Bundle, "tok")
	want := "client: attest join token: rpc error: code = PermissionDenied desc = join token is invalid, expired or already used"
	if err == nil || err.Error() != want || status.Code(err) != codes.PermissionDenied {
		t.Fatalf("got %v, want %q", err, want)
	}
	// The issued SVID works for the agent service.
	c, err := New(testCtx(t), Config{Addrs: []string{addr}, TrustDomain: e.ca.TD, Bundle: e.ca.Bundle, SVID: NewRotatingSVID(svid)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Agent().ListAuthorizedEntries(testCtx(t), &tier0v1.ListAuthorizedEntriesRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestBootstrapRefusesServerFromOtherCA(t *testing.T) {
	e := newEnv(t)
	rogue := clienttest.NewServer(clienttest.NewCA(t, "example.org"))
	rogue.AddToken("tok", "host-1")
	_, err := Bootstrap(testCtx(t), []string{rogue.Start(t, "n1")}, e.ca.TD, e.ca.Bundle, "tok")
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "x509svid: could not verify leaf certificate") {
		t.Fatalf("got %v, want a refused handshake", err)
	}
	if rogue.Calls("AttestJoinToken") != 0 {
		t.Fatal("the token reached the rogue server")
	}
}

func TestBootstrapEmptyToken(t *testing.T) {
	e := newEnv(t)
	_, err := Bootstrap(testCtx(t), nil, e.ca.TD, e.ca.Bundle, "")
	if err == nil || err.Error() != "client: join token is empty" {
		t.Fatalf("got %v", err)
	}
}

func TestRotatingSVID(t *testing.T) {
	e := newEnv(t)
	var r RotatingSVID
	if _, err := r.GetX509SVID(); err == nil || err.Error() != "client: no SVID" {
		t.Fatalf("empty source: %v", err)
	}
	a := e.ca.Issue(t, spiffeid.RequireFromString("spiffe://example.org/tier0/agent/a"), time.Hour)
	b := e.ca.Issue(t, spiffeid.RequireFromString("spiffe://example.org/tier0/agent/b"), time.Hour)
	r.Set(a)
	if got, _ := r.GetX509SVID(); got != a {
		t.Fatal("want a")
	}
	r.Set(b)
	if got, _ := r.GetX509SVID(); got != b {
		t.Fatal("want b")
	}
}

// TestLargeResponse: an answer above gRPC's default 4 MiB receive limit
// (a full page of audit records is ~7 MiB) reaches the caller.
func TestLargeResponse(t *testing.T) {
	e := newEnv(t)
	long := "spiffe://example.org/" + strings.Repeat("w", 200)
	for range 30000 {
		e.fake.AddEntry("a1", long, time.Hour)
	}
	c, _ := e.client(t, []string{e.fake.Start(t, "n1")}, 0)
	resp, err := c.Agent().ListAuthorizedEntries(testCtx(t), &tier0v1.ListAuthorizedEntriesRequest{})
	if err != nil {
		t.Fatalf("%v", err)
	}
	if n := len(resp.GetEntries()); n != 30000 {
		t.Fatalf("got %d entries, want 30000", n)
	}
}

// TestGatesPerAddress: a refusal holds calls to that address only; a new
// call goes to an open one at once, and when every gate is closed it waits
// for the one that opens soonest.
func TestGatesPerAddress(t *testing.T) {
	e := newEnv(t)
	c, waits := e.client(t, []string{e.fake.Start(t, "n1"), e.fake.Start(t, "n2")}, 1)
	c.gates[0].hold(time.Minute, codes.ResourceExhausted)
	if _, err := c.Agent().GetBundle(testCtx(t), &tier0v1.GetBundleRequest{}); err != nil {
		t.Fatal(err)
	}
	if len(waits.d) != 0 {
		t.Fatalf("waited %v although n2 was open", waits.d)
	}
	c.gates[1].hold(2*time.Second, codes.ResourceExhausted)
	if _, err := c.Agent().GetBundle(testCtx(t), &tier0v1.GetBundleRequest{}); err != nil {
		t.Fatal(err)
	}
	if len(waits.d) != 1 || waits.d[0] < 1500*time.Millisecond || waits.d[0] > 2400*time.Millisecond {
		t.Fatalf("waited %v, want one wait of ~2s for n2 (the soonest), not n1's minute", waits.d)
	}
	if got := e.fake.Calls("GetBundle"); got != 2 {
		t.Fatalf("server saw %d calls, want 2", got)
	}
}

// TestRetryHintFromRetryInfo: a refusal made before the call was read
// carries its hint as a google.rpc.RetryInfo detail, not a trailer; the
// trailer wins when both are there.
func TestRetryHintFromRetryInfo(t *testing.T) {
	st, err := status.New(codes.ResourceExhausted, "overloaded").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := RetryHint(st.Err(), nil); !ok || d != 1500*time.Millisecond {
		t.Fatalf("RetryInfo 1.5s: %v %v", d, ok)
	}
	if d, ok := RetryHint(st.Err(), metadata.Pairs(RetryAfterKey, "200")); !ok || d != 200*time.Millisecond {
		t.Fatalf("trailer 200ms and RetryInfo: %v %v, want the trailer's", d, ok)
	}
	long, _ := status.New(codes.ResourceExhausted, "x").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Hour)})
	if d, ok := RetryHint(long.Err(), nil); !ok || d != maxRetryAfter {
		t.Fatalf("RetryInfo 1h: %v %v, want capped at %v", d, ok, maxRetryAfter)
	}
	if _, ok := RetryHint(status.Error(codes.ResourceExhausted, "x"), nil); ok {
		t.Fatal("no hint at all reported one")
	}
}
