// Package keyalg holds the digest choice shared by the signer package and
// its backends (which cannot import it).
package keyalg

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
)

// HashFor returns the digest a CA signature with pub uses, the same choice
// crypto/x509 makes for certificates: SHA-384 for P-384, SHA-512 for P-521,
// SHA-256 for P-256 and RSA.
func HashFor(pub crypto.PublicKey) crypto.Hash {
	if k, ok := pub.(*ecdsa.PublicKey); ok {
		switch k.Curve {
		case elliptic.P384():
			return crypto.SHA384
		case elliptic.P521():
			return crypto.SHA512
		}
	}
	return crypto.SHA256
}
