package client

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/roles"
)

// RotatingSVID is an x509svid.Source whose SVID is swapped atomically on
// renewal; new TLS handshakes present the current SVID.
type RotatingSVID struct {
	p atomic.Pointer[x509svid.SVID]
}

// NewRotatingSVID returns a source holding svid.
func NewRotatingSVID(svid *x509svid.SVID) *RotatingSVID {
	r := &RotatingSVID{}
	r.p.Store(svid)
	return r
}

// Set replaces the SVID.
func (r *RotatingSVID) Set(svid *x509svid.SVID) { r.p.Store(svid) }

// GetX509SVID returns the current SVID.
func (r *RotatingSVID) GetX509SVID() (*x509svid.SVID, error) {
	s := r.p.Load()
	if s == nil {
		return nil, errors.New("client: no SVID")
	}
	return s, nil
}

// NewCSR makes a P-256 key and a DER PKCS#10 request for it, with id as the
// URI SAN (none when id is zero).
func NewCSR(id spiffeid.ID) (csrDER []byte, key crypto.Signer, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("client: generate key: %w", err)
	}
	tmpl := &x509.CertificateRequest{}
	if !id.IsZero() {
		tmpl.URIs = []*url.URL{id.URL()}
	}
	csrDER, err = x509.CreateCertificateRequest(rand.Reader, tmpl, k)
	if err != nil {
		return nil, nil, fmt.Errorf("client: create csr: %w", err)
	}
	return csrDER, k, nil
}

// ParseChain builds an SVID from a DER chain (leaf first) and the private
// key of its leaf, and verifies it against bundle: the leaf must be a valid
// X509-SVID (SPIFFE ID, not a CA, digitalSignature) whose public key matches
// key, chaining to a root in the bundle.
func ParseChain(chain [][]byte, key crypto.Signer, bundle x509bundle.Source) (*x509svid.SVID, error) {
	if len(chain) == 0 {
		return nil, errors.New("client: empty certificate chain")
	}
	var certs []byte
	for _, der := range chain {
		certs = append(certs, der...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("client: marshal key: %w", err)
	}
	svid, err := x509svid.ParseRaw(certs, keyDER)
	if err != nil {
		return nil, fmt.Errorf("client: parse svid: %w", err)
	}
	id, _, err := x509svid.Verify(svid.Certificates, bundle)
	if err != nil {
		return nil, fmt.Errorf("client: verify svid: %w", err)
	}
	if id != svid.ID {
		return nil, fmt.Errorf("client: verified id %q differs from svid id %q", id, svid.ID)
	}
	return svid, nil
}

// BundleFromResponse builds the bundle of td from a GetBundle response.
func BundleFromResponse(td spiffeid.TrustDomain, resp *tier0v1.GetBundleResponse) (*x509bundle.Bundle, error) {
	if resp.GetTrustDomain() != "" && resp.GetTrustDomain() != td.Name() {
		return nil, fmt.Errorf("client: bundle is for trust domain %q, want %q", resp.GetTrustDomain(), td.Name())
	}
	if len(resp.GetX509Authorities()) == 0 {
		return nil, errors.New("client: bundle has no x509 authorities")
	}
	roots := make([]*x509.Certificate, 0, len(resp.GetX509Authorities()))
	for i, der := range resp.GetX509Authorities() {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("client: bundle authority %d: %w", i, err)
		}
		roots = append(roots, c)
	}
	return x509bundle.FromX509Authorities(td, roots), nil
}

// Bootstrap exchanges a one-time join token for an agent SVID: it makes a
// key and CSR, calls Bootstrap.AttestJoinToken over server-authenticated
// TLS (the server must present a node SVID of td chaining to bundle), and
// returns the verified SVID spiffe://td/tier0/agent/NAME with its key.
func Bootstrap(ctx context.Context, addrs []string, td spiffeid.TrustDomain, bundle x509bundle.Source, token string) (*x509svid.SVID, error) {
	if token == "" {
		return nil, errors.New("client: join token is empty")
	}
	c, err := New(ctx, Config{Addrs: addrs, TrustDomain: td, Bundle: bundle})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	csr, key, err := NewCSR(spiffeid.ID{})
	if err != nil {
		return nil, err
	}
	resp, err := c.Bootstrap().AttestJoinToken(ctx, &tier0v1.AttestJoinTokenRequest{Token: token, Csr: csr})
	if err != nil {
		return nil, fmt.Errorf("client: attest join token: %w", err)
	}
	svid, err := ParseChain(resp.GetChain(), key, bundle)
	if err != nil {
		return nil, err
	}
	if _, ok := roles.AgentName(td, svid.ID); !ok {
		return nil, fmt.Errorf("client: server issued %q, not an agent id of %q", svid.ID, td)
	}
	if resp.GetSpiffeId() != svid.ID.String() {
		return nil, fmt.Errorf("client: server says %q but the svid is for %q", resp.GetSpiffeId(), svid.ID)
	}
	return svid, nil
}
