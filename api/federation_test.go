package api

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
)

// fakeFedStore is a one-package fake of the Raft federation state.
type fakeFedStore struct {
	rels   []ha.Federation
	stored map[string][]byte
}

func (f *fakeFedStore) SetFederation(context.Context, ha.Federation) error { return nil }
func (f *fakeFedStore) DeleteFederation(context.Context, string) error     { return nil }
func (f *fakeFedStore) SetFederatedBundle(_ context.Context, td string, b []byte, _ time.Duration) error {
	f.stored[td] = b
	return nil
}
func (f *fakeFedStore) TrustState() ha.TrustState { return ha.TrustState{Federations: f.rels} }

// TestFetchPeerBundleBadEndpoints: every malicious or broken endpoint gives
// a clear error and the old bundle is kept (nothing stored).
func TestFetchPeerBundleBadEndpoints(t *testing.T) {
	peer := spiffeid.RequireTrustDomainFromString("peer.org")
	good := spiffebundle.New(peer)
	good.AddX509Authority(newFixtureRoot(t))
	goodJSON, err := good.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, want string
		handler    http.HandlerFunc
	}{
		{"bad json", "bad bundle", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("{not json")) }},
		{"huge body", "larger than 1048576 bytes", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{"keys":[` + strings.Repeat(" ", 2<<20) + `]}`))
		}},
		{"http error", "endpoint answered 500", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", 500) }},
		{"no keys", "bundle has no keys", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"keys":[]}`)) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewTLSServer(c.handler)
			defer srv.Close()
			roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
			store := &fakeFedStore{stored: map[string][]byte{}, rels: []ha.Federation{{TrustDomain: "peer.org", Endpoint: srv.URL, Profile: ProfileWeb, Bundle: goodJSON}}}
			fed, err := NewFederator(FederatorConfig{Store: store, IsLeader: func() bool { return true }, Roots: roots})
			if err != nil {
				t.Fatal(err)
			}
			fed.RefreshDue(context.Background())
			if got := fed.LastError("peer.org"); !strings.Contains(got, c.want) {
				t.Fatalf("last error %q, want it to contain %q", got, c.want)
			}
			if len(store.stored) != 0 {
				t.Fatal("a bad bundle was stored")
			}
		})
	}
	t.Run("good", func(t *testing.T) {
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(goodJSON) }))
		defer srv.Close()
		roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
		store := &fakeFedStore{stored: map[string][]byte{}, rels: []ha.Federation{{TrustDomain: "peer.org", Endpoint: srv.URL, Profile: ProfileWeb}}}
		fed, _ := NewFederator(FederatorConfig{Store: store, IsLeader: func() bool { return true }, Roots: roots})
		fed.RefreshDue(context.Background())
		if fed.LastError("peer.org") != "" || len(store.stored["peer.org"]) == 0 {
			t.Fatalf("good endpoint: error %q, stored %d bytes", fed.LastError("peer.org"), len(store.stored["peer.org"]))
		}
	})
}

// TestFederatorRedactsEndpoint: a relationship stored with credentials in
// its endpoint (before they were refused) never shows them in the fetch
// error an admin reads or in the log.
func TestFederatorRedactsEndpoint(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens: the fetch fails with an error quoting the URL
	var logs bytes.Buffer
	store := &fakeFedStore{stored: map[string][]byte{}, rels: []ha.Federation{{TrustDomain: "peer.org", Endpoint: "https://alice:s3cret@" + addr + "/bundle", Profile: ProfileWeb}}}
	fed, err := NewFederator(FederatorConfig{Store: store, IsLeader: func() bool { return true }, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	fed.RefreshDue(context.Background())
	got := fed.LastError("peer.org")
	if !strings.Contains(got, "https://xxxxx@"+addr+"/bundle") {
		t.Errorf("last error %q does not name the redacted endpoint", got)
	}
	for _, out := range []string{got, logs.String()} {
		if strings.Contains(out, "alice") || strings.Contains(out, "s3cret") {
			t.Errorf("credentials leaked: %s", out)
		}
	}
	if !strings.Contains(logs.String(), "xxxxx@") {
		t.Errorf("log does not name the endpoint: %s", logs.String())
	}
}

func TestValidateFederation(t *testing.T) {
	own := spiffeid.RequireTrustDomainFromString("example.org")
	pem := []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	cases := []struct {
		rel  *tier0v1.FederationRelationship
		want string
	}{
		{nil, "invalid argument: federation: relationship is required"},
		{&tier0v1.FederationRelationship{TrustDomain: "example.org", Endpoint: "https://x", Profile: "https_web"}, "invalid argument: federation: cannot federate with our own trust domain example.org"},
		{&tier0v1.FederationRelationship{TrustDomain: "Bad TD", Endpoint: "https://x", Profile: "https_web"}, `invalid argument: federation: ca: trust domain "Bad TD": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores: invalid spiffe id`},
		{&tier0v1.FederationRelationship{TrustDomain: strings.Repeat("a", 256), Endpoint: "https://x", Profile: "https_web"}, `invalid argument: federation: ca: trust domain of 256 bytes exceeds the limit of 255 bytes: invalid spiffe id`},
		{&tier0v1.FederationRelationship{TrustDomain: "x.org", Endpoint: "https://alice:s3cret@x/b", Profile: "https_web"}, `invalid argument: federation: endpoint "https://xxxxx@x/b": must not carry credentials (user:pass@): a bundle endpoint is public`},
		{&tier0v1.FederationRelationship{TrustDomain: "x.org", Endpoint: "ftp://u:pw@x/" + strings.Repeat("p", 2000), Profile: "https_web"}, `invalid argument: federation: endpoint "ftp://xxxxx@x/` + strings.Repeat("p", 114) + `"... (2014 bytes): want an https:// URL`},
		{&tier0v1.FederationRelationship{TrustDomain: "x.org", Endpoint: "http://x", Profile: "https_web"}, `invalid argument: federation: endpoint "http://x": want an https:// URL`},
		{&tier0v1.FederationRelationship{TrustDomain: "x.org", Endpoint: "https://x", Profile: "ftp"}, `invalid argument: federation: profile "ftp": want https_spiffe or https_web`},
		{&tier0v1.FederationRelationship{TrustDomain: "x.org", Endpoint: "https://x", Profile: "https_spiffe"}, `invalid argument: federation: https_spiffe needs --endpoint-spiffe-id: ca: spiffe id "": cannot be empty: invalid spiffe id`},
		{&tier0v1.FederationRelationship{TrustDomain: "x.org", Endpoint: "https://x", Profile: "https_spiffe", EndpointSpiffeId: "spiffe://x.org/e"}, "invalid argument: federation: https_spiffe needs initial trust (--bundle) to authenticate the endpoint"},
		{&tier0v1.FederationRelationship{TrustDomain: "x.org", Endpoint: "https://x", Profile: "https_web", Bundle: pem}, "invalid argument: federation: initial bundle: neither a SPIFFE bundle (JSON) nor PEM certificates"},
	}
	for _, c := range cases {
		_, err := ValidateFederation(own, c.rel)
		if err == nil || err.Error() != c.want {
			t.Errorf("got %v\nwant %s", err, c.want)
		}
	}
}

func newFixtureRoot(t *testing.T) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	root, err := ca.NewRoot(spiffeid.RequireTrustDomainFromString("peer.org"), key, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return root
}
