//go:build cgo

package signer

import (
	"context"

	"github.com/tier0-ca/tier0/signer/internal/health"
	"github.com/tier0-ca/tier0/signer/pkcs11"
)

// PKCS11Supported is true when this binary can load PKCS#11 modules (it
// was built with cgo).
const PKCS11Supported = true

func openPKCS11(ctx context.Context, uri string, opts Options, m *health.Metrics) (Signer, error) {
	return pkcs11.Open(ctx, uri, pkcs11.Config{Sessions: opts.Sessions, Timeout: opts.Timeout, Logger: opts.Logger, Metrics: m})
}
