// Package auditcli is the logic behind tier0's audit and witness commands
// (docs/AUDIT.md): it reads bundles and time flags, verifies a record store
// or a verifiable export offline, builds and checks Merkle proofs, and
// renders records, decisions and verify results as table, text, JSON or
// CSV. cmd/tier0 keeps only the flags and calls these.
package auditcli

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/tier0-ca/tier0/internal/cliout"
)

// Output formats (the -o flag), as internal/cliout names them.
const (
	Table = cliout.Table
	Text  = cliout.Text
	JSON  = cliout.JSON
	CSV   = cliout.CSV
)

// LoadPEMCerts reads every CERTIFICATE block of the PEM file at path (a
// --bundle); none is an error.
func LoadPEMCerts(path string) ([]*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--bundle: %w", err)
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, raw = pem.Decode(raw)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("--bundle %s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--bundle %s: no PEM certificates", path)
	}
	return out, nil
}

// LoadBundles reads the certificates of every PEM file in paths.
func LoadBundles(paths []string) ([]*x509.Certificate, error) {
	var roots []*x509.Certificate
	for _, b := range paths {
		rs, err := LoadPEMCerts(b)
		if err != nil {
			return nil, err
		}
		roots = append(roots, rs...)
	}
	return roots, nil
}
