package client

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tier0-ca/tier0/internal/atomicfile"
)

// File names inside a credential directory.
const (
	SVIDFile   = "svid.pem"   // certificate chain, leaf first
	KeyFile    = "key.pem"    // PKCS#8 private key, mode 0600
	BundleFile = "bundle.pem" // trust bundle roots
)

// LoadBundleFile reads PEM root certificates as the bundle of td.
func LoadBundleFile(path string, td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	b, err := x509bundle.Load(td, path)
	if err != nil {
		return nil, fmt.Errorf("client: load bundle: %w", err)
	}
	if b.Empty() {
		return nil, fmt.Errorf("client: load bundle %s: no certificates", path)
	}
	return b, nil
}

// LoadSVIDFiles reads an SVID from a PEM chain and a PEM private key.
func LoadSVIDFiles(certPath, keyPath string) (*x509svid.SVID, error) {
	svid, err := x509svid.Load(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("client: load svid: %w", err)
	}
	return svid, nil
}

// WriteSVIDFiles writes svid.pem (chain), key.pem (PKCS#8, 0600) and, when
// bundle is not nil, bundle.pem into dir (created 0700 with its parents if
// missing). dir itself and the files must not be symbolic links: a link
// planted there is refused with an error wrapping atomicfile.ErrSymlink and
// left untouched (see WriteSVIDTo for the rest).
func WriteSVIDFiles(dir string, svid *x509svid.SVID, bundle *x509bundle.Bundle) error {
	d, err := atomicfile.OpenDir(dir, 0o700)
	if err != nil {
		return fmt.Errorf("client: write svid: %w", err)
	}
	defer d.Close()
	return WriteSVIDTo(d, svid, bundle)
}

// FileWriter atomically replaces one file of a directory, never through a
// symbolic link (implemented by *atomicfile.Dir).
type FileWriter interface {
	WriteFile(name string, data []byte, mode os.FileMode) error
}

// WriteSVIDTo writes KeyFile, SVIDFile and (bundle not nil) BundleFile
// with w. Each file is replaced atomically (temporary file, fsync,
// rename); the key is written first, so a reader may briefly see a new key
// with the old chain: readers should reload on a key mismatch.
func WriteSVIDTo(w FileWriter, svid *x509svid.SVID, bundle *x509bundle.Bundle) error {
	if svid == nil {
		return errors.New("client: write svid: nil svid")
	}
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		return fmt.Errorf("client: marshal svid: %w", err)
	}
	if err := w.WriteFile(KeyFile, keyPEM, 0o600); err != nil {
		return fmt.Errorf("client: write svid: %w", err)
	}
	if err := w.WriteFile(SVIDFile, certPEM, 0o644); err != nil {
		return fmt.Errorf("client: write svid: %w", err)
	}
	if bundle == nil {
		return nil
	}
	return writeBundle(w, BundleFile, bundle)
}

// WriteBundleFile atomically writes the bundle's roots as PEM (path must
// not be a symbolic link).
func WriteBundleFile(path string, bundle *x509bundle.Bundle) error {
	return writeBundle(dirPath(filepath.Dir(path)), filepath.Base(path), bundle)
}

// dirPath writes into a directory named by its path (atomicfile.Write).
type dirPath string

func (d dirPath) WriteFile(name string, data []byte, mode os.FileMode) error {
	return atomicfile.Write(filepath.Join(string(d), name), data, mode)
}

func writeBundle(w FileWriter, name string, bundle *x509bundle.Bundle) error {
	var out []byte
	for _, c := range bundle.X509Authorities() {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if len(out) == 0 {
		return errors.New("client: write bundle: no certificates")
	}
	if err := w.WriteFile(name, out, 0o644); err != nil {
		return fmt.Errorf("client: write bundle: %w", err)
	}
	return nil
}

// OperatorFiles returns the paths of the operator credential that
// `tier0 server` bootstraps into its data directory.
func OperatorFiles(dataDir string) (bundlePath, certPath, keyPath string) {
	return filepath.Join(dataDir, BundleFile),
		filepath.Join(dataDir, "admin", SVIDFile),
		filepath.Join(dataDir, "admin", KeyFile)
}

// Dial returns a Client authenticated with the SVID in certPath/keyPath
// (admin, auditor or agent) that trusts the roots in bundlePath. The trust
// domain is the SVID's. It is meant for CLIs:
//
//	bundle, cert, key := client.OperatorFiles(dataDir)
//	c, err := client.Dial(ctx, addrs, logger, bundle, cert, key)
//	... c.Admin().ListEntries(ctx, req)
func Dial(ctx context.Context, addrs []string, logger *slog.Logger, bundlePath, certPath, keyPath string) (*Client, error) {
	svid, err := LoadSVIDFiles(certPath, keyPath)
	if err != nil {
		return nil, err
	}
	td := svid.ID.TrustDomain()
	bundle, err := LoadBundleFile(bundlePath, td)
	if err != nil {
		return nil, err
	}
	if _, _, err := x509svid.Verify(svid.Certificates, bundle); err != nil {
		return nil, fmt.Errorf("client: %s does not verify against %s: %w", certPath, bundlePath, err)
	}
	return New(ctx, Config{Addrs: addrs, TrustDomain: td, Bundle: bundle, SVID: NewRotatingSVID(svid), Logger: logger})
}

// LeafNotAfter returns the expiry (unix seconds) of the first certificate
// in a PEM file.
func LeafNotAfter(certPath string) (int64, error) {
	data, err := os.ReadFile(certPath)
	if err != nil {
		return 0, fmt.Errorf("client: read %s: %w", certPath, err)
	}
	na, err := PEMLeafNotAfter(data)
	if err != nil {
		return 0, fmt.Errorf("client: %s: %w", certPath, err)
	}
	return na, nil
}

// PEMLeafNotAfter returns the expiry (unix seconds) of the first
// certificate in PEM data.
func PEMLeafNotAfter(data []byte) (int64, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return 0, errors.New("no PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return 0, err
	}
	return c.NotAfter.Unix(), nil
}
