package nodeattest

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/internal/nodeattest/attesttest"
)

// TestJWKSURL: keys come from jwks_url on first use; a token signed by a
// key the set does not hold makes one reload (key rotation), at most every
// jwksRefresh; an unreachable URL is Unavailable, not a denial.
func TestJWKSURL(t *testing.T) {
	oldKey, newKey := attesttest.NewIssuer(t, "https://accounts.google.com", "old"), attesttest.NewIssuer(t, "https://accounts.google.com", "new")
	var mu sync.Mutex
	serve := oldKey.JWKS(t)
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		mu.Lock()
		defer mu.Unlock()
		_, _ = w.Write(serve)
	}))
	defer srv.Close()
	now := time.Now()
	var clockMu sync.Mutex
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	reg, err := New(Config{TrustDomain: td, Clock: clock, Sections: map[string]string{
		GCPIIT: "jwks_url: " + srv.URL + "\nproject_allow_list: [p]\nallow_reattestation: true\n"}})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := reg.Get(GCPIIT)
	tok := func(is *attesttest.Issuer, id string) []byte {
		return []byte(is.Sign(t, aud, now, now.Add(time.Hour), attesttest.GCEClaims("p", "z", id, "vm")))
	}
	if _, err := a.Attest(t.Context(), tok(oldKey, "1"), nil); err != nil {
		t.Fatal(err)
	}
	// Rotation: the new key is published; within jwksRefresh of the
	// last load a token with its kid is denied without a fetch.
	mu.Lock()
	serve = newKey.JWKS(t)
	mu.Unlock()
	if _, err := a.Attest(t.Context(), tok(newKey, "2"), nil); !errors.Is(err, ErrDenied) || fetches.Load() != 1 {
		t.Fatalf("new kid before refresh: %v, %d fetches", err, fetches.Load())
	}
	clockMu.Lock()
	now = now.Add(jwksRefresh + time.Second)
	clockMu.Unlock()
	if _, err := a.Attest(t.Context(), tok(newKey, "3"), nil); err != nil || fetches.Load() != 2 {
		t.Fatalf("new kid after refresh: %v, %d fetches", err, fetches.Load())
	}
	srv.Close()
	clockMu.Lock()
	now = now.Add(jwksRefresh + time.Second)
	clockMu.Unlock()
	if _, err := a.Attest(t.Context(), tok(oldKey, "4"), nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("unreachable jwks_url: %v", err)
	}
}
