package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tier0-ca/tier0/ha"
)

// keys is a KeySource whose published keys a test changes.
type keys struct {
	mu   sync.Mutex
	keys []ha.JWTKey
}

func (k *keys) TrustState() ha.TrustState {
	k.mu.Lock()
	defer k.mu.Unlock()
	return ha.TrustState{JWTKeys: append([]ha.JWTKey(nil), k.keys...)}
}

func (k *keys) publish(t *testing.T, id string, notAfter time.Time) *ecdsa.PrivateKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	k.mu.Lock()
	k.keys = append(k.keys, ha.JWTKey{ID: id, PublicKey: der, NotAfter: notAfter})
	k.mu.Unlock()
	return priv
}

func sign(t *testing.T, priv *ecdsa.PrivateKey, kid, iss, sub string, aud []string, exp time.Time) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: priv, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(jwt.Claims{Issuer: iss, Subject: sub, Audience: aud, Expiry: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(time.Now())}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// serve starts an HTTPS test server for a handler whose issuer is the
// server's own URL plus prefix, and returns the issuer and a context whose
// HTTP client trusts the server.
func serve(t *testing.T, ks KeySource, prefix string) (string, context.Context) {
	t.Helper()
	var h http.Handler
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	iss := srv.URL + prefix
	handler, err := New(Config{Issuer: iss, Keys: ks})
	if err != nil {
		t.Fatal(err)
	}
	h = handler
	return iss, oidc.ClientContext(context.Background(), srv.Client())
}

// TestVerifyThroughDiscovery: go-oidc, an independent verifier, finds the
// keys through the discovery document and accepts tokens signed by either
// of two overlapping keys; it refuses a token of an expired (unlisted) key,
// of another issuer and for another audience.
func TestVerifyThroughDiscovery(t *testing.T) {
	ks := &keys{}
	now := time.Now()
	old := ks.publish(t, "k-old", now.Add(10*time.Minute))
	cur := ks.publish(t, "k-new", now.Add(2*time.Hour))
	gone := ks.publish(t, "k-expired", now.Add(-time.Minute))
	for _, prefix := range []string{"", "/tenant/a"} {
		iss, ctx := serve(t, ks, prefix)
		p, err := oidc.NewProvider(ctx, iss)
		if err != nil {
			t.Fatalf("prefix %q: discovery: %v", prefix, err)
		}
		v := p.Verifier(&oidc.Config{ClientID: "sts.amazonaws.com"})
		for kid, key := range map[string]*ecdsa.PrivateKey{"k-old": old, "k-new": cur} {
			tok, err := v.Verify(ctx, sign(t, key, kid, iss, "spiffe://example.org/web", []string{"sts.amazonaws.com"}, now.Add(5*time.Minute)))
			if err != nil || tok.Subject != "spiffe://example.org/web" {
				t.Fatalf("prefix %q: token of %s: %v", prefix, kid, err)
			}
		}
		for name, raw := range map[string]string{
			"expired key":    sign(t, gone, "k-expired", iss, "spiffe://example.org/web", []string{"sts.amazonaws.com"}, now.Add(5*time.Minute)),
			"other issuer":   sign(t, cur, "k-new", "https://elsewhere.example", "spiffe://example.org/web", []string{"sts.amazonaws.com"}, now.Add(5*time.Minute)),
			"other audience": sign(t, cur, "k-new", iss, "spiffe://example.org/web", []string{"vault"}, now.Add(5*time.Minute)),
		} {
			if _, err := v.Verify(ctx, raw); err == nil {
				t.Errorf("prefix %q: %s accepted", prefix, name)
			}
		}
	}
}

func TestDocumentAndKeys(t *testing.T) {
	ks := &keys{}
	ks.publish(t, "k1", time.Now().Add(time.Hour))
	h, err := New(Config{Issuer: "https://oidc.example.org/td", Keys: ks})
	if err != nil {
		t.Fatal(err)
	}
	get := func(method, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec
	}
	resp := get(http.MethodGet, "/td/.well-known/openid-configuration")
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.Code != 200 {
		t.Fatalf("discovery: %d %v", resp.Code, err)
	}
	want := map[string]any{
		"issuer": "https://oidc.example.org/td", "jwks_uri": "https://oidc.example.org/td/keys", "authorization_endpoint": "",
		"response_types_supported": []any{"id_token"}, "subject_types_supported": []any{"public"},
		"id_token_signing_alg_values_supported": []any{"ES256"},
	}
	gotJSON, _ := json.Marshal(doc)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Fatalf("discovery document\n got %s\nwant %s", gotJSON, wantJSON)
	}
	resp = get(http.MethodGet, "/td/keys")
	body := resp.Body.Bytes()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil || len(set.Keys) != 1 || set.Keys[0].KeyID != "k1" ||
		set.Keys[0].Algorithm != "ES256" || set.Keys[0].Use != "sig" || !set.Keys[0].IsPublic() {
		t.Fatalf("keys %s: %v", body, err)
	}
	if resp.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("content type %q", resp.Header().Get("Content-Type"))
	}
	if c := get(http.MethodPost, "/td/keys").Code; c != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", c)
	}
	for _, p := range []string{"/.well-known/openid-configuration", "/td/other", "/keys"} {
		if c := get(http.MethodGet, p).Code; c != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, c)
		}
	}
	// A key that cannot be parsed is our fault: 500, logged, no key leaked.
	ks.keys = append(ks.keys, ha.JWTKey{ID: "bad", PublicKey: []byte{1}, NotAfter: time.Now().Add(time.Hour)})
	if c := get(http.MethodGet, "/td/keys").Code; c != http.StatusInternalServerError {
		t.Errorf("bad key: %d", c)
	}
}

func TestParseIssuer(t *testing.T) {
	for _, ok := range []string{"https://oidc.example.org", "https://oidc.example.org/", "https://h:8443/a/b"} {
		if _, err := ParseIssuer(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "http://oidc.example.org", "oidc.example.org", "https://", "https://u:p@h", "https://h?x=1", "https://h#f", "https://h?", "::"} {
		_, err := ParseIssuer(bad)
		if err == nil || !strings.HasPrefix(err.Error(), "oidc: issuer") {
			t.Errorf("%q: %v, want an issuer error", bad, err)
		}
	}
	if _, err := New(Config{Issuer: "https://h"}); err == nil || err.Error() != "oidc: config: a key source is required" {
		t.Errorf("no keys: %v", err)
	}
}
