package cliout

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// Bundle prints `tier0 bundle show`: the X.509 roots as PEM, or with -o
// json the SPIFFE bundle (roots, JWT keys, sequence number).
func Bundle(w io.Writer, b *tier0v1.GetBundleResponse, format string) error {
	if format != JSON {
		for _, der := range b.GetX509Authorities() {
			if err := pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: der}); err != nil {
				return err
			}
		}
		return nil
	}
	td, err := spiffeid.TrustDomainFromString(b.GetTrustDomain())
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	sb := spiffebundle.New(td)
	sb.SetSequenceNumber(b.GetSequence())
	for _, der := range b.GetX509Authorities() {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("bundle: root: %w", err)
		}
		sb.AddX509Authority(cert)
	}
	for _, j := range b.GetJwtAuthorities() {
		pub, err := x509.ParsePKIXPublicKey(j.GetPublicKey())
		if err != nil {
			return fmt.Errorf("bundle: JWT key %s: %w", j.GetKeyId(), err)
		}
		if err := sb.AddJWTAuthority(j.GetKeyId(), pub); err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
	}
	raw, err := sb.Marshal()
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	_, err = fmt.Fprintln(w, string(raw))
	return err
}
