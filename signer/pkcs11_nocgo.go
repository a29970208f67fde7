//go:build !cgo

package signer

import (
	"context"
	"fmt"

	"github.com/tier0-ca/tier0/signer/internal/health"
)

// PKCS11Supported is true when this binary can load PKCS#11 modules (it
// was built with cgo).
const PKCS11Supported = false

// ErrNoPKCS11 is returned for a pkcs11: URI by a binary built without cgo
// (CGO_ENABLED=0, such as the static tier0 image): loading a PKCS#11
// module needs cgo and a C library.
var ErrNoPKCS11 = fmt.Errorf("signer: pkcs11: this tier0 binary was built without cgo and cannot load PKCS#11 modules " +
	"(use a cgo build, e.g. the tier0 image's -pkcs11 variant: docs/OPERATIONS.md \"Image\")")

func openPKCS11(context.Context, string, Options, *health.Metrics) (Signer, error) {
	return nil, ErrNoPKCS11
}
