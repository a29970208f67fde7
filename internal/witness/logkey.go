package witness

import (
	"bytes"
	"crypto/x509"
)

// SameLogKey reports whether the audit key certificate certDER certifies
// the key of one of the log's certificates logCerts (DER). It compares
// the subject public keys, not the certificates: a server re-issues its
// audit key certificate at every start and root change, and a witness or
// auditor that pinned the key keeps recognising it.
func SameLogKey(certDER []byte, logCerts ...[]byte) bool {
	c, err := x509.ParseCertificate(certDER)
	if err != nil {
		return false
	}
	for _, der := range logCerts {
		l, err := x509.ParseCertificate(der)
		if err == nil && bytes.Equal(c.RawSubjectPublicKeyInfo, l.RawSubjectPublicKeyInfo) {
			return true
		}
	}
	return false
}
