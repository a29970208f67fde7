package nodeattest

import (
	"crypto/x509"
	"embed"
	"encoding/pem"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// awsCertsFS holds AWS's public RSA-2048 certificates for instance
// identity documents, one REGION.pem per Region (awscerts/README.md has
// their source and how to update them).
//
//go:embed awscerts/*.pem
var awsCertsFS embed.FS

// AWSEmbeddedCerts returns the embedded certificates by Region: what
// aws_iid verifies against when its configuration sets no region_certs.
func AWSEmbeddedCerts() (map[string][]*x509.Certificate, error) {
	files, err := fs.Glob(awsCertsFS, "awscerts/*.pem")
	if err != nil {
		return nil, fmt.Errorf("nodeattest: embedded aws certificates: %w", err)
	}
	out := make(map[string][]*x509.Certificate, len(files))
	for _, f := range files {
		raw, err := awsCertsFS.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("nodeattest: embedded aws certificates: %w", err)
		}
		certs, err := parsePEMCerts(raw)
		if err != nil {
			return nil, fmt.Errorf("nodeattest: embedded aws certificate %s: %w", f, err)
		}
		out[strings.TrimSuffix(path.Base(f), ".pem")] = certs
	}
	return out, nil
}

// parsePEMCerts parses every CERTIFICATE block of raw (at least one).
func parsePEMCerts(raw []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for rest := raw; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no certificates")
	}
	return out, nil
}
