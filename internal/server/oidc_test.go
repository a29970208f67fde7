package server

import "testing"

func TestOIDCDiscoveryValidate(t *testing.T) {
	for _, tc := range []struct {
		o    OIDCDiscovery
		want string
	}{
		{OIDCDiscovery{}, ""},
		{OIDCDiscovery{Issuer: "https://oidc.example.org"}, ""},
		{OIDCDiscovery{Addr: ":8444", Issuer: "https://oidc.example.org", CertFile: "c", KeyFile: "k"}, ""},
		{OIDCDiscovery{Addr: ":8444", Issuer: "https://oidc.example.org"}, "--oidc-discovery needs --oidc-issuer, --oidc-cert and --oidc-key"},
		{OIDCDiscovery{CertFile: "c", KeyFile: "k"}, "--oidc-cert and --oidc-key need --oidc-discovery"},
		{OIDCDiscovery{Issuer: "http://oidc.example.org"}, `--oidc-issuer: oidc: issuer "http://oidc.example.org": want an https URL with a host and no user info, query or fragment`},
	} {
		err := tc.o.validate()
		if (err == nil) != (tc.want == "") || (err != nil && err.Error() != tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
	}
}
