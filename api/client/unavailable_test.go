package client

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// refuse makes the first n calls fail with code (OK: succeed) and, when
// hint is not empty, a retry-after-ms trailer.
func refuse(n int, code codes.Code, hint string) func(ctx context.Context, method string) error {
	var mu sync.Mutex
	return func(ctx context.Context, _ string) error {
		mu.Lock()
		defer mu.Unlock()
		if n == 0 {
			return nil
		}
		n--
		if hint != "" {
			if err := grpc.SetTrailer(ctx, metadata.Pairs(RetryAfterKey, hint)); err != nil {
				return err
			}
		}
		if code == codes.OK {
			return nil
		}
		return status.Error(code, code.String()+": refused for the test")
	}
}

// unavailable makes the first n calls fail with Unavailable (a node whose
// CA key cannot sign) and a retry-after-ms trailer of hint; with ok, the
// calls succeed instead but still carry the hint (some items failed so).
func unavailable(n int, hint string, ok bool) func(ctx context.Context, method string) error {
	if ok {
		return refuse(n, codes.OK, hint)
	}
	return refuse(n, codes.Unavailable, hint)
}

// TestUnavailableHintHonoured: Unavailable with a retry-after hint is held
// the way ResourceExhausted is: the retries wait for the hint (jittered),
// not for the blind round backoff.
func TestUnavailableHintHonoured(t *testing.T) {
	e := newEnv(t)
	e.fake.SetHook(unavailable(2, "1500", false))
	c, waits := e.client(t, []string{e.fake.Start(t, "n1")}, 3)
	if _, err := c.Agent().GetBundle(testCtx(t), &tier0v1.GetBundleRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := e.fake.Calls("GetBundle"); got != 3 {
		t.Fatalf("got %d attempts, want 3", got)
	}
	if len(waits.d) != 2 {
		t.Fatalf("waited %v, want 2 waits (one per refusal)", waits.d)
	}
	for _, d := range waits.d {
		if d < 1190*time.Millisecond || d > 1800*time.Millisecond {
			t.Fatalf("wait %v outside 1.5s +-20%%", d)
		}
	}
}

// TestUnavailableHintHoldsOtherCalls: the hint holds the next call too; a
// call whose deadline comes first fails at once, locally, with Unavailable.
func TestUnavailableHintHoldsOtherCalls(t *testing.T) {
	e := newEnv(t)
	e.fake.SetHook(unavailable(1, "20000", false))
	c, waits := e.client(t, []string{e.fake.Start(t, "n1")}, 1)
	if _, err := c.Agent().GetBundle(testCtx(t), &tier0v1.GetBundleRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("first call: %v, want Unavailable", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Agent().GetBundle(ctx, &tier0v1.GetBundleRequest{})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "after this call's deadline") {
		t.Fatalf("held call: %v, want a local Unavailable", err)
	}
	if got := e.fake.Calls("GetBundle"); got != 1 || len(waits.d) != 0 {
		t.Fatalf("server saw %d calls and the client waited %v; want 1 call, no wait", got, waits.d)
	}
}

// TestHintOnSuccessHolds: a successful answer with a hint (some items of a
// batch failed because the CA key could not sign) holds the next call.
func TestHintOnSuccessHolds(t *testing.T) {
	e := newEnv(t)
	e.fake.SetHook(unavailable(1, "2000", true))
	c, waits := e.client(t, []string{e.fake.Start(t, "n1")}, 1)
	for range 2 {
		if _, err := c.Agent().GetBundle(testCtx(t), &tier0v1.GetBundleRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if len(waits.d) != 1 || waits.d[0] < 1500*time.Millisecond || waits.d[0] > 2400*time.Millisecond {
		t.Fatalf("second call waited %v, want one wait of 2s +-20%%", waits.d)
	}
}
