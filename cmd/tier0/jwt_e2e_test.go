package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestWorkloadAPIJWT: a workload gets a JWT-SVID through go-spiffe's
// JWTSource, another validates it through the agent and locally against
// the JWT bundle; a bad audience, an expired and a foreign token are
// refused.
func TestWorkloadAPIJWT(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, t.TempDir())
	uid := fmt.Sprint(os.Getuid())
	web := spiffeid.RequireFromString("spiffe://example.org/web")
	must(srv.cli("entry", "create", "--agent", "host-1", "--spiffe-id", web.String(), "--selector", "unix:uid:"+uid))
	agent := startAgent(t, srv, "host-1", "--sync-interval", "200ms")

	src, err := workloadapi.NewJWTSource(ctx, workloadapi.WithClientOptions(agent.addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	svid, err := src.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "db"})
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID != web || svid.Audience[0] != "db" || time.Until(svid.Expiry) < 10*time.Minute {
		t.Fatalf("got %s aud %v exp %v", svid.ID, svid.Audience, svid.Expiry)
	}
	// Validated locally with the JWT bundle the source got from the agent...
	if _, err := jwtsvid.ParseAndValidate(svid.Marshal(), src, []string{"db"}); err != nil {
		t.Fatalf("local validation: %v", err)
	}
	// ...and by the agent.
	got, err := workloadapi.ValidateJWTSVID(ctx, svid.Marshal(), "db", agent.addr())
	if err != nil || got.ID != web {
		t.Fatalf("ValidateJWTSVID: %v, %v", got, err)
	}
	// The audit log has the issuance.
	pollUntil(t, 20*time.Second, func() bool {
		out, err := srv.cli("audit", "list", "--spiffe-id", web.String(), "-o", "json")
		return err == nil && strings.Contains(out, `"issuer_key_id":"jwt:`)
	})

	refused := func(name, token, aud, want string) {
		t.Helper()
		_, err := workloadapi.ValidateJWTSVID(ctx, token, aud, agent.addr())
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want InvalidArgument containing %q", name, err, want)
		}
	}
	refused("bad audience", svid.Marshal(), "other", `expected audience in ["other"]`)

	// A token signed by a foreign key with our key ID, and an expired one.
	key := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	hdr, err := jwt.ParseSigned(svid.Marshal(), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(c jwt.Claims, keyID string) string {
		s := must(jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: keyID}}, nil))
		return must(jwt.Signed(s).Claims(c).Serialize())
	}
	now := time.Now()
	ourKid := hdr.Headers[0].KeyID
	refused("foreign", sign(jwt.Claims{Subject: web.String(), Audience: jwt.Audience{"db"}, Expiry: jwt.NewNumericDate(now.Add(time.Hour))}, ourKid), "db", "jwtsvid: unable to get claims from token: go-jose/go-jose: error in cryptographic primitive")
	refused("unknown key", sign(jwt.Claims{Subject: web.String(), Audience: jwt.Audience{"db"}, Expiry: jwt.NewNumericDate(now.Add(time.Hour))}, "nope"), "db", `no JWT authority "nope" found`)
	// An expired token with our key ID fails on its signature first (the
	// expiry check on a genuinely signed one is TestMintJWTExpiredRefused
	// in ca, with the same go-spiffe validator the agent uses).
	refused("expired", sign(jwt.Claims{Subject: web.String(), Audience: jwt.Audience{"db"}, Expiry: jwt.NewNumericDate(now.Add(-time.Hour))}, ourKid), "db", "error in cryptographic primitive")
	refused("garbage", "not.a.jwt", "db", "jwtsvid: unable to parse JWT token")

	_, err = src.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "db", Subject: spiffeid.RequireFromString("spiffe://example.org/not-mine")})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("foreign subject: got %v, want PermissionDenied", err)
	}
}
