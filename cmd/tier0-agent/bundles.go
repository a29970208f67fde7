package main

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"maps"
	"strings"
	"sync"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// federation holds the X.509 roots of federated trust domains, keyed by
// trust domain ID (spiffe://td), as the Workload API sends them.
type federation struct {
	mu    sync.Mutex
	roots map[string][]byte            // concatenated DER
	jwt   map[string]*jwtbundle.Bundle // JWT keys
}

// federatedX509 returns a copy of the roots of the federated trust
// domains named in only (never nil): a workload gets only the bundles its
// entries federate with.
func (a *agent) federatedX509(only map[string]bool) map[string][]byte {
	a.fed.mu.Lock()
	defer a.fed.mu.Unlock()
	out := make(map[string][]byte, len(only))
	for id, roots := range a.fed.roots {
		if only[strings.TrimPrefix(id, "spiffe://")] {
			out[id] = roots
		}
	}
	return out
}

// setFederatedX509 replaces the federated roots and reports a change.
func (a *agent) setFederatedX509(roots map[string][]byte) bool {
	a.fed.mu.Lock()
	defer a.fed.mu.Unlock()
	if maps.EqualFunc(roots, a.fed.roots, func(x, y []byte) bool { return string(x) == string(y) }) {
		return false
	}
	a.fed.roots = roots
	return true
}

func concatDER(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, c.Raw...)
	}
	return out
}

// setTrust updates the JWT keys and federated bundles from a GetBundle
// response and reports whether anything changed.
func (a *agent) setTrust(resp *tier0v1.GetBundleResponse) (bool, error) {
	keys := map[string]crypto.PublicKey{}
	for _, k := range resp.GetJwtAuthorities() {
		pub, err := x509.ParsePKIXPublicKey(k.GetPublicKey())
		if err != nil {
			return false, fmt.Errorf("jwt authority %s: %w", k.GetKeyId(), err)
		}
		keys[k.GetKeyId()] = pub
	}
	changed := !maps.EqualFunc(keys, a.jwt.JWTAuthorities(), func(x, y crypto.PublicKey) bool {
		e, ok := x.(interface{ Equal(crypto.PublicKey) bool })
		return ok && e.Equal(y)
	})
	if changed {
		a.jwt.SetJWTAuthorities(keys)
	}
	fedX509 := map[string][]byte{}
	fedJWT := map[string]*jwtbundle.Bundle{}
	for _, f := range resp.GetFederated() {
		td, err := spiffeid.TrustDomainFromString(f.GetTrustDomain())
		if err != nil || td == a.td {
			continue
		}
		b, err := spiffebundle.Parse(td, f.GetSpiffeBundle())
		if err != nil {
			continue // the server validated it when fetching; skip a bad one
		}
		fedX509[td.IDString()] = concatDER(b.X509Authorities())
		fedJWT[td.IDString()] = b.JWTBundle()
	}
	if a.setFederatedX509(fedX509) {
		changed = true
	}
	a.fed.mu.Lock()
	a.fed.jwt = fedJWT
	a.fed.mu.Unlock()
	return changed, nil
}

// jwtBundles returns the JWT bundles of our trust domain and of the
// federated ones named in only.
func (a *agent) jwtBundles(only map[string]bool) *jwtbundle.Set {
	set := jwtbundle.NewSet(a.jwt)
	a.fed.mu.Lock()
	defer a.fed.mu.Unlock()
	for _, b := range a.fed.jwt {
		if only[b.TrustDomain().Name()] {
			set.Add(b)
		}
	}
	return set
}
