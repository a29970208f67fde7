// Package clienttest provides a tiny in-memory CA and a fake tier0 server
// (Bootstrap and Agent services over real TLS on loopback) for tests of
// api/client and its users. It is test support only.
package clienttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// CA is a self-signed P-256 root that issues X509-SVIDs directly.
type CA struct {
	TD     spiffeid.TrustDomain
	Root   *x509.Certificate
	Bundle *x509bundle.Bundle
	key    *ecdsa.PrivateKey
}

// NewCA returns a CA for the trust domain td.
func NewCA(t testing.TB, td string) *CA {
	t.Helper()
	trust := spiffeid.RequireTrustDomainFromString(td)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{Organization: []string{"tier0 test"}, CommonName: "test root " + td},
		URIs:                  []*url.URL{trust.ID().URL()},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{TD: trust, Root: root, key: key, Bundle: x509bundle.FromX509Authorities(trust, []*x509.Certificate{root})}
}

// Issue returns a new SVID (fresh P-256 key) for id living ttl.
func (ca *CA) Issue(t testing.TB, id spiffeid.ID, ttl time.Duration) *x509svid.SVID {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := ca.sign(id, key.Public(), ttl)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{leaf}, PrivateKey: key}
}

// SignCSR signs a DER CSR for id (the CSR's URI SAN when id is zero) and
// returns the DER chain, leaf first.
func (ca *CA) SignCSR(csrDER []byte, id spiffeid.ID, ttl time.Duration) ([][]byte, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("parse csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr signature: %w", err)
	}
	if id.IsZero() {
		if len(csr.URIs) != 1 {
			return nil, errors.New("csr needs exactly one URI SAN")
		}
		if id, err = spiffeid.FromURI(csr.URIs[0]); err != nil {
			return nil, err
		}
	}
	der, err := ca.sign(id, csr.PublicKey, ttl)
	if err != nil {
		return nil, err
	}
	return [][]byte{der}, nil
}

func (ca *CA) sign(id spiffeid.ID, pub any, ttl time.Duration) ([]byte, error) {
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		URIs:                  []*url.URL{id.URL()},
		NotBefore:             now,
		NotAfter:              now.Add(ttl),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	return x509.CreateCertificate(rand.Reader, tmpl, ca.Root, pub, ca.key)
}

func serial(t testing.TB) *big.Int {
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return sn
}

// Serve starts a gRPC server on 127.0.0.1 presenting svid, requesting (not
// verifying) client certificates like the tier0 server, and returns its
// address. The server stops when the test ends.
func Serve(t testing.TB, svid *x509svid.SVID, register func(*grpc.Server)) string {
	t.Helper()
	cert := tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(conf)))
	register(srv)
	go srv.Serve(lis) //nolint:errcheck // returns when stopped
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// DeadAddr returns a loopback address on which nothing listens.
func DeadAddr(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}
