package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tier0-ca/tier0/api/client"
	"github.com/tier0-ca/tier0/ca"
)

// selfCred is an SVID the server issues to itself or its operators: the
// node SVID it serves TLS with, and the admin and auditor credentials it
// writes to the data dir so the CLI works at once. Each is a normal,
// recorded SVID within the 15-60 minute bounds, renewed at half life.
type selfCred struct {
	ca   *ca.CA
	id   spiffeid.ID
	ttl  time.Duration
	dir  string // "" = memory only
	set  func(*x509svid.SVID)
	log  *slog.Logger
	curr *x509svid.SVID
}

func (c *selfCred) mint(ctx context.Context) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return fmt.Errorf("csr: %w", err)
	}
	res, err := c.ca.MintFor(ctx, spiffeid.ID{}, c.id, csr, c.ttl)
	if err != nil {
		return fmt.Errorf("mint %s: %w", c.id, err)
	}
	certs := make([]*x509.Certificate, 0, len(res.Chain))
	for _, der := range res.Chain {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("parse own chain: %w", err)
		}
		certs = append(certs, cert)
	}
	svid := &x509svid.SVID{ID: c.id, Certificates: certs, PrivateKey: key}
	if c.dir != "" {
		if err := client.WriteSVIDFiles(c.dir, svid, nil); err != nil {
			return err
		}
	}
	c.curr = svid
	if c.set != nil {
		c.set(svid)
	}
	c.log.Debug("credential issued", "spiffe_id", c.id.String(), "not_after", certs[0].NotAfter)
	return nil
}

// run renews the credential at half life (with jitter), or at once when
// the CA switched roots (creds_root.go), until ctx ends. Failures are
// logged and retried with backoff: the credential in use stays valid for
// the other half of its life.
func (c *selfCred) run(ctx context.Context) error {
	backoff := time.Second
	for {
		t := time.NewTimer(time.Until(renewAt(c.curr.Certificates[0])))
		check := time.NewTicker(rootCheckEvery)
	wait:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				check.Stop()
				return nil
			case <-t.C:
				break wait
			case <-check.C:
				if c.rootSwitched() {
					c.log.Info("CA root switched: renewing credential now", "spiffe_id", c.id.String())
					break wait
				}
			}
		}
		t.Stop()
		check.Stop()
		err := c.mint(ctx)
		if ctx.Err() != nil {
			return ctx.Err() // stopped while renewing
		}
		if err != nil {
			c.log.Error("renewing credential failed", "spiffe_id", c.id.String(), "err", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			backoff = min(backoff*2, time.Minute)
			continue
		}
		backoff = time.Second
	}
}

// renewAt is half the lifetime, minus up to 10% jitter.
func renewAt(cert *x509.Certificate) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	j, _ := rand.Int(rand.Reader, big.NewInt(int64(life/10)+1))
	return cert.NotBefore.Add(life/2 - time.Duration(j.Int64()))
}

// PEMCerts encodes DER certificates as PEM (DATA/bundle.pem).
func PEMCerts(certs ...[]byte) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	return out
}
