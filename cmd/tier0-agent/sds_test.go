package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tier0-ca/tier0/api/client/clienttest"
)

func secretNames(t *testing.T, r resolved) []string {
	t.Helper()
	var names []string
	for _, a := range r.resources {
		var s tlsv3.Secret
		if err := a.UnmarshalTo(&s); err != nil {
			t.Fatal(err)
		}
		names = append(names, s.GetName())
	}
	return names
}

// TestSecretSetNames: which SDS names resolve, wait or are refused for a
// workload whose entries federate with partner.example only.
func TestSecretSetNames(t *testing.T) {
	own := clienttest.NewCA(t, "example.org")
	partner := clienttest.NewCA(t, "partner.example")
	web := own.Issue(t, spiffeid.RequireFromString("spiffe://example.org/web"), time.Hour)
	set := secretSet{
		names: sdsNames{defaultSVID: "default", bundle: "ROOTCA", allBundles: "ALL"},
		td:    "spiffe://example.org", roots: own.Bundle.X509Authorities(),
		federated: map[string][]byte{"spiffe://partner.example": concatDER(partner.Bundle.X509Authorities())},
		v: view{
			ids:       []string{"spiffe://example.org/db", "spiffe://example.org/web"},
			svids:     []*x509svid.SVID{web},
			federates: map[string]bool{"partner.example": true, "late.example": true},
		},
	}
	tests := []struct {
		names                    []string
		resources, pending, deny []string
	}{
		{names: nil, resources: []string{"spiffe://example.org", "spiffe://partner.example", "spiffe://example.org/web"}},
		{names: []string{"default", "ROOTCA", "ALL", "default"}, resources: []string{"default", "ROOTCA", "ALL"}},
		{names: []string{"spiffe://example.org/db"}, pending: []string{"spiffe://example.org/db"}},
		{names: []string{"spiffe://late.example"}, pending: []string{"spiffe://late.example"}},
		{names: []string{"spiffe://example.org/web", "spiffe://example.org/api", "spiffe://other.example"},
			resources: []string{"spiffe://example.org/web"}, deny: []string{"spiffe://example.org/api", "spiffe://other.example"}},
	}
	for _, tt := range tests {
		r, err := set.resolve(tt.names)
		if err != nil {
			t.Fatal(err)
		}
		if got := secretNames(t, r); !slices.Equal(got, tt.resources) || !slices.Equal(r.pending, tt.pending) || !slices.Equal(r.denied, tt.deny) {
			t.Errorf("%q: resources %q pending %q denied %q, want %q %q %q", tt.names, got, r.pending, r.denied, tt.resources, tt.pending, tt.deny)
		}
	}
	r, _ := set.resolve([]string{"ALL"})
	var all tlsv3.Secret
	_ = r.resources[0].UnmarshalTo(&all)
	var cfg tlsv3.SPIFFECertValidatorConfig
	if err := all.GetValidationContext().GetCustomValidatorConfig().GetTypedConfig().UnmarshalTo(&cfg); err != nil {
		t.Fatal(err)
	}
	var tds []string
	for _, td := range cfg.GetTrustDomains() {
		tds = append(tds, td.GetName())
		if !strings.HasPrefix(string(td.GetTrustBundle().GetInlineBytes()), "-----BEGIN CERTIFICATE-----") {
			t.Errorf("%s: bundle not PEM", td.GetName())
		}
	}
	if !slices.Equal(tds, []string{"example.org", "partner.example"}) {
		t.Fatalf("ALL trust domains %v", tds)
	}
	// No SVID yet: default waits.
	set.v.svids = nil
	if r, _ := set.resolve([]string{"default"}); len(r.resources) != 0 || !slices.Equal(r.pending, []string{"default"}) {
		t.Fatalf("default before minting: %+v", r)
	}
}

func TestSDSNamesValidate(t *testing.T) {
	if err := (sdsNames{"default", "ROOTCA", "ALL"}).validate(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []sdsNames{{"", "ROOTCA", "ALL"}, {"x", "x", "ALL"}, {"default", "spiffe://example.org", "ALL"}} {
		if err := n.validate(); err == nil || !strings.HasPrefix(err.Error(), "--sds-default-svid-name, ") {
			t.Errorf("%+v: %v", n, err)
		}
	}
}
