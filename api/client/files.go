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
// bundle is not nil, bundle.pem into dir (created 0700 if missing). Each file
// is replaced atomically (temporary file, fsync, rename); the key is written
// first, so a reader may briefly see a new key with the old chain: readers
// should reload on a key mismatch.
func WriteSVIDFiles(dir string, svid *x509svid.SVID, bundle *x509bundle.Bundle) error {
	if svid == nil {
		return errors.New("client: write svid: nil svid")
	}
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		return fmt.Errorf("client: marshal svid: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("client: write svid: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, KeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, SVIDFile), certPEM, 0o644); err != nil {
		return err
	}
	if bundle != nil {
		return WriteBundleFile(filepath.Join(dir, BundleFile), bundle)
	}
	return nil
}

// WriteBundleFile atomically writes the bundle's roots as PEM.
func WriteBundleFile(path string, bundle *x509bundle.Bundle) error {
	var out []byte
	for _, c := range bundle.X509Authorities() {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if len(out) == 0 {
		return errors.New("client: write bundle: no certificates")
	}
	return atomicfile.Write(path, out, 0o644)
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
	block, _ := pem.Decode(data)
	if block == nil {
		return 0, fmt.Errorf("client: %s: no PEM block", certPath)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return 0, fmt.Errorf("client: %s: %w", certPath, err)
	}
	return c.NotAfter.Unix(), nil
}
