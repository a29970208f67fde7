package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// TestOIDCDiscovery: a tier0 server with --oidc-discovery on HTTPS (a test
// Web PKI certificate); a workload gets a JWT-SVID from its agent; go-oidc,
// an independent verifier, finds the keys through the discovery document
// and accepts the token for its audience, with iss the configured issuer.
func TestOIDCDiscovery(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	caPEM, certPEM, keyPEM := webPKI(t)
	for name, b := range map[string][]byte{"cert.pem": certPEM, "key.pem": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeAddr(t)
	issuer := "https://" + addr
	srv := startServer(t, t.TempDir(), "--oidc-discovery", addr, "--oidc-issuer", issuer,
		"--oidc-cert", filepath.Join(dir, "cert.pem"), "--oidc-key", filepath.Join(dir, "key.pem"))
	web := spiffeid.RequireFromString("spiffe://example.org/web")
	must(srv.cli("entry", "create", "--agent", "host-1", "--spiffe-id", web.String(), "--selector", "unix:uid:"+fmt.Sprint(os.Getuid())))
	agent := startAgent(t, srv, "host-1", "--sync-interval", "200ms")
	svid, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "sts.amazonaws.com"}, agent.addr())
	if err != nil {
		t.Fatal(err)
	}
	if svid.Claims["iss"] != issuer {
		t.Fatalf("iss %v, want %s", svid.Claims["iss"], issuer)
	}

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	octx := oidc.ClientContext(ctx, hc)
	provider, err := oidc.NewProvider(octx, issuer)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := provider.Verifier(&oidc.Config{ClientID: "sts.amazonaws.com"}).Verify(octx, svid.Marshal())
	if err != nil || tok.Subject != web.String() || tok.Issuer != issuer {
		t.Fatalf("go-oidc: %v, %v", tok, err)
	}
	if _, err := provider.Verifier(&oidc.Config{ClientID: "vault"}).Verify(octx, svid.Marshal()); err == nil {
		t.Fatal("go-oidc accepted the token for another audience")
	}

	// Half a configuration is refused at start with a clear message.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--oidc-discovery", freeAddr(t)}, "--oidc-discovery needs --oidc-issuer, --oidc-cert and --oidc-key"},
		{[]string{"--oidc-issuer", "http://insecure.example"}, `--oidc-issuer: oidc: issuer "http://insecure.example": want an https URL`},
	} {
		out, err := runBin("tier0", append([]string{"server", "--data-dir", t.TempDir()}, tc.args...)...)
		if err == nil || !strings.Contains(out+err.Error(), tc.want) {
			t.Errorf("%v: %v %s, want %s", tc.args, err, out, tc.want)
		}
	}
}
