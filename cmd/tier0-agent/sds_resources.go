package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/protobuf/types/known/anypb"
)

// secretTypeURL is the type of every SDS resource.
var secretTypeURL = "type.googleapis.com/" + string((&tlsv3.Secret{}).ProtoReflect().Descriptor().FullName())

// spiffeValidator is Envoy's SPIFFE certificate validator extension.
const spiffeValidator = "envoy.tls.cert_validator.spiffe"

// sdsNames are the resource names with a meaning beyond a SPIFFE ID or a
// trust domain ID; the defaults are SPIRE's (default_svid_name,
// default_bundle_name, default_all_bundles_name).
type sdsNames struct {
	defaultSVID string // the caller's first SVID (by SPIFFE ID)
	bundle      string // our trust domain's bundle
	allBundles  string // ours and the federated ones, for the SPIFFE validator
}

// validate refuses names that are empty, equal, or a SPIFFE ID (which
// would hide an SVID or bundle of that name).
func (n sdsNames) validate() error {
	all := []string{n.defaultSVID, n.bundle, n.allBundles}
	for i, name := range all {
		if name == "" || strings.HasPrefix(name, "spiffe://") || slices.Contains(all[:i], name) {
			return fmt.Errorf("--sds-default-svid-name, --sds-default-bundle-name, --sds-default-all-bundles-name: want three different names that are not SPIFFE IDs, got %q", all)
		}
	}
	return nil
}

// secretSet resolves resource names for one workload's view.
type secretSet struct {
	names     sdsNames
	td        string              // our trust domain ID, spiffe://TD
	roots     []*x509.Certificate // of td
	federated map[string][]byte   // trust domain ID -> concatenated DER, only those the workload may see
	v         view
}

// outcome of resolving a list of names.
type resolved struct {
	resources []*anypb.Any
	pending   []string // the workload's, but not available yet (an SVID not yet minted)
	denied    []string // not the workload's: never sent
}

// resolve builds the secrets for names (all of the workload's when empty),
// in the order asked.
func (s secretSet) resolve(names []string) (resolved, error) {
	if len(names) == 0 {
		names = append([]string{s.td}, sortedKeys(s.federated)...)
		for _, sv := range s.v.svids {
			names = append(names, sv.ID.String())
		}
	}
	var out resolved
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		secret, ok, err := s.one(name)
		switch {
		case err != nil:
			return resolved{}, err
		case secret != nil:
			res, err := anypb.New(secret)
			if err != nil {
				return resolved{}, fmt.Errorf("sds: %s: %w", name, err)
			}
			out.resources = append(out.resources, res)
		case ok:
			out.pending = append(out.pending, name)
		default:
			out.denied = append(out.denied, name)
		}
	}
	return out, nil
}

// one builds the secret called name; nil and ok when it is the
// workload's but not available yet; nil and !ok when it is not the
// workload's.
func (s secretSet) one(name string) (*tlsv3.Secret, bool, error) {
	switch {
	case name == s.td || name == s.names.bundle:
		return trustedCA(name, s.roots), true, nil
	case name == s.names.allBundles:
		return s.all(name)
	case name == s.names.defaultSVID:
		if len(s.v.svids) == 0 {
			return nil, true, nil
		}
		return tlsCertificate(name, s.v.svids[0])
	case strings.Count(name, "/") == 2 && strings.HasPrefix(name, "spiffe://"): // a trust domain ID
		der, ok := s.federated[name]
		if !ok {
			return nil, s.v.federates[strings.TrimPrefix(name, "spiffe://")], nil
		}
		roots, err := x509.ParseCertificates(der)
		if err != nil {
			return nil, false, fmt.Errorf("sds: bundle of %s: %w", name, err)
		}
		return trustedCA(name, roots), true, nil
	}
	for _, sv := range s.v.svids {
		if sv.ID.String() == name {
			return tlsCertificate(name, sv)
		}
	}
	return nil, slices.Contains(s.v.ids, name), nil
}

// all is the SPIFFE validator configuration with our bundle and the
// federated ones the workload may see.
func (s secretSet) all(name string) (*tlsv3.Secret, bool, error) {
	tds := []*tlsv3.SPIFFECertValidatorConfig_TrustDomain{{Name: strings.TrimPrefix(s.td, "spiffe://"), TrustBundle: inline(pemCerts(s.roots))}}
	for _, id := range sortedKeys(s.federated) {
		roots, err := x509.ParseCertificates(s.federated[id])
		if err != nil {
			return nil, false, fmt.Errorf("sds: bundle of %s: %w", id, err)
		}
		tds = append(tds, &tlsv3.SPIFFECertValidatorConfig_TrustDomain{Name: strings.TrimPrefix(id, "spiffe://"), TrustBundle: inline(pemCerts(roots))})
	}
	slices.SortFunc(tds, func(a, b *tlsv3.SPIFFECertValidatorConfig_TrustDomain) int {
		return strings.Compare(a.GetName(), b.GetName())
	})
	cfg, err := anypb.New(&tlsv3.SPIFFECertValidatorConfig{TrustDomains: tds})
	if err != nil {
		return nil, false, fmt.Errorf("sds: %s: %w", name, err)
	}
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		CustomValidatorConfig: &corev3.TypedExtensionConfig{Name: spiffeValidator, TypedConfig: cfg},
	}}}, true, nil
}

func trustedCA(name string, roots []*x509.Certificate) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: inline(pemCerts(roots)),
	}}}
}

func tlsCertificate(name string, sv *x509svid.SVID) (*tlsv3.Secret, bool, error) {
	certs, key, err := sv.Marshal()
	if err != nil {
		return nil, false, fmt.Errorf("sds: %s: %w", sv.ID, err)
	}
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: inline(certs), PrivateKey: inline(key),
	}}}, true, nil
}

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

func pemCerts(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
