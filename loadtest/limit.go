package loadtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Limit is the bare per-SVID work of any CA on this machine, with nothing
// around it: parse a CSR, check its signature, build a template and
// x509.CreateCertificate (which signs with an in-memory P-256 key and
// verifies the signature it made), on every core. No RPC, no TLS, no
// authorization, no journal, no storage. tier0's and SPIRE's throughput are
// reported as a fraction of it.
type Limit struct {
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	csrs   [][]byte
}

// NewLimit makes a self-signed P-256 CA and uses csrs (DER, each with one
// URI SAN) as the requests.
func NewLimit(csrs [][]byte) (*Limit, error) {
	if len(csrs) == 0 {
		return nil, fmt.Errorf("loadtest: limit needs CSRs")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "limit CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Limit{caCert: cert, caKey: key, csrs: csrs}, nil
}

// One issues one certificate for csr k: the unit of work the limit counts.
func (l *Limit) One(k int) error {
	csr, err := x509.ParseCertificateRequest(l.csrs[k%len(l.csrs)])
	if err != nil {
		return err
	}
	if err := csr.CheckSignature(); err != nil {
		return err
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	now := time.Now().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).SetBytes(b[:]), NotBefore: now.Add(-10 * time.Second), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, URIs: []*url.URL{csr.URIs[0]}, AuthorityKeyId: l.caCert.SubjectKeyId,
	}
	_, err = x509.CreateCertificate(rand.Reader, tmpl, l.caCert, csr.PublicKey, l.caKey)
	return err
}

// Run calls One on runtime.GOMAXPROCS(0) goroutines for d and returns
// certificates per second.
func (l *Limit) Run(ctx context.Context, d time.Duration) (float64, error) {
	var (
		n     atomic.Int64
		wg    sync.WaitGroup
		first atomic.Pointer[error]
		start = time.Now()
		end   = start.Add(d)
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) && ctx.Err() == nil {
				if err := l.One(int(n.Add(1))); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		return 0, fmt.Errorf("loadtest: limit: %w", *e)
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}
