package ca

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

func jwtEnv(t *testing.T, keyLife time.Duration, mod ...func(*Config)) (*testEnv, JWTKey, *jwtbundle.Bundle) {
	t.Helper()
	e := newEnv(t, func(c *Config) {
		for _, m := range mod {
			m(c)
		}
	})
	k, err := NewJWTKey(e.now, keyLife)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ca.SetJWTKey(k); err != nil {
		t.Fatal(err)
	}
	b := jwtbundle.New(testTD)
	if err := b.AddJWTAuthority(k.ID, k.Signer.Public()); err != nil {
		t.Fatal(err)
	}
	return e, k, b
}

func TestMintJWT(t *testing.T) {
	e, k, bundle := jwtEnv(t, 24*time.Hour)
	res, err := e.ca.MintJWT(context.Background(), testAgent, JWTRequest{ID: testWLID, Audience: []string{"db", "cache"}, TTL: 20 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	// go-spiffe is the oracle; its validation uses the wall clock, which
	// the test clock is frozen at.
	svid, err := jwtsvid.ParseAndValidate(res.Token, bundle, []string{"db"})
	if err != nil {
		t.Fatalf("go-spiffe rejects the token: %v", err)
	}
	if svid.ID != testWLID || !svid.Expiry.Equal(e.now.Add(20*time.Minute)) || len(svid.Audience) != 2 {
		t.Fatalf("got %s exp %v aud %v", svid.ID, svid.Expiry, svid.Audience)
	}
	if svid.Claims["jti"] != res.Record.Serial {
		t.Fatalf("jti %v, record serial %s", svid.Claims["jti"], res.Record.Serial)
	}
	recs := e.j.records()
	if len(recs) != 1 || recs[0].IssuerKeyID != "jwt:"+k.ID || recs[0].SPIFFEID != testWLID.String() || recs[0].AgentID != testAgent.String() {
		t.Fatalf("journal: %+v", recs)
	}
	if _, err := jwtsvid.ParseAndValidate(res.Token, bundle, []string{"other"}); err == nil {
		t.Fatal("wrong audience accepted")
	}
	if _, ok := svid.Claims["iss"]; ok {
		t.Fatalf("iss %v without a configured issuer", svid.Claims["iss"])
	}
}

// TestMintJWTIssuer: a configured issuer is the iss claim.
func TestMintJWTIssuer(t *testing.T) {
	e, _, b := jwtEnv(t, time.Hour, func(c *Config) { c.JWTIssuer = "https://oidc.example.org" })
	res, err := e.ca.MintJWT(context.Background(), testAgent, JWTRequest{ID: testWLID, Audience: []string{"sts.amazonaws.com"}})
	if err != nil {
		t.Fatal(err)
	}
	svid, err := jwtsvid.ParseAndValidate(res.Token, b, []string{"sts.amazonaws.com"})
	if err != nil || svid.Claims["iss"] != "https://oidc.example.org" {
		t.Fatalf("iss %v, %v", svid.Claims, err)
	}
}

func TestMintJWTErrors(t *testing.T) {
	e, _, _ := jwtEnv(t, 24*time.Hour)
	ctx := context.Background()
	other := spiffeid.RequireFromString("spiffe://example.org/not-granted")
	tests := []struct {
		name string
		req  JWTRequest
		err  string
		is   error
	}{
		{"no audience", JWTRequest{ID: testWLID}, "ca: at least one audience is required: invalid audience", ErrInvalidAudience},
		{"empty audience", JWTRequest{ID: testWLID, Audience: []string{"a", ""}}, `ca: audience 2 is empty: invalid audience`, ErrInvalidAudience},
		{"long audience", JWTRequest{ID: testWLID, Audience: []string{strings.Repeat("a", 1<<20)}}, `ca: audience 1 of 1048576 bytes exceeds the limit of 256 bytes: invalid audience`, ErrInvalidAudience},
		{"long id", JWTRequest{ID: spiffeid.RequireFromString("spiffe://example.org/" + strings.Repeat("a", MaxIDBytes)), Audience: []string{"a"}},
			"ca: spiffe id of 2069 bytes exceeds the limit of 2048 bytes: invalid spiffe id", ErrInvalidID},
		{"ttl", JWTRequest{ID: testWLID, Audience: []string{"a"}, TTL: time.Minute}, "", ErrInvalidTTL},
		{"denied", JWTRequest{ID: other, Audience: []string{"a"}}, "", ErrPermissionDenied},
		{"reserved", JWTRequest{ID: spiffeid.RequireFromString("spiffe://example.org/tier0/admin"), Audience: []string{"a"}}, "", ErrInvalidID},
	}
	for _, tt := range tests {
		_, err := e.ca.MintJWT(ctx, testAgent, tt.req)
		if !errors.Is(err, tt.is) || (tt.err != "" && err.Error() != tt.err) {
			t.Errorf("%s: got %v, want %v %q", tt.name, err, tt.is, tt.err)
		}
	}
	if n := len(e.j.records()); n != 0 {
		t.Fatalf("%d records for refused requests", n)
	}
}

func TestMintJWTKeyLifetime(t *testing.T) {
	// A key with 20m left caps a 60m token; one with 5m left refuses.
	e, _, _ := jwtEnv(t, 20*time.Minute)
	res, err := e.ca.MintJWT(context.Background(), testAgent, JWTRequest{ID: testWLID, Audience: []string{"a"}, TTL: time.Hour})
	if err != nil || !res.Expiry.Equal(e.now.Add(20*time.Minute)) {
		t.Fatalf("got %v, %v", res.Expiry, err)
	}
	e2, _, _ := jwtEnv(t, 5*time.Minute)
	_, err = e2.ca.MintJWT(context.Background(), testAgent, JWTRequest{ID: testWLID, Audience: []string{"a"}})
	if !errors.Is(err, ErrIssuer) || !strings.HasPrefix(err.Error(), "ca: jwt key expires too soon") {
		t.Fatalf("got %v", err)
	}
	fresh := newEnv(t, nil)
	if _, err := fresh.ca.MintJWT(context.Background(), testAgent, JWTRequest{ID: testWLID, Audience: []string{"a"}}); !errors.Is(err, ErrIssuer) {
		t.Fatalf("no key: got %v", err)
	}
}

func TestMintJWTExpiredRefused(t *testing.T) {
	e, _, bundle := jwtEnv(t, 24*time.Hour)
	past := e.now.Add(-2 * time.Hour)
	e.ca.cfg.Clock = func() time.Time { return past }
	res, err := e.ca.MintJWT(context.Background(), testAgent, JWTRequest{ID: testWLID, Audience: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwtsvid.ParseAndValidate(res.Token, bundle, []string{"a"}); err == nil || err.Error() != "jwtsvid: token has expired" {
		t.Fatalf("got %v, want jwtsvid: token has expired", err)
	}
	foreign := jwtbundle.New(spiffeid.RequireTrustDomainFromString("other.org"))
	if _, err := jwtsvid.ParseAndValidate(res.Token, foreign, []string{"a"}); err == nil {
		t.Fatal("token validated against another trust domain's bundle")
	}
}
