package server

import (
	"bytes"
	"crypto/x509"
	"time"

	"github.com/tier0-ca/tier0/ca"
)

// A node's own credentials (its serving SVID, the admin and auditor SVIDs)
// follow a root switch at once rather than at half life: after `tier0 ca
// activate` nothing the node presents keeps depending on the replaced root,
// so it can be tainted and pruned without waiting for them.

// rootCheckEvery is how often a credential compares its root with the
// CA's.
const rootCheckEvery = 2 * time.Second

// rootKeyID is the key ID of the root a chain descends from: the
// AuthorityKeyId of its last certificate.
func rootKeyID(chain []*x509.Certificate) []byte {
	if len(chain) == 0 {
		return nil
	}
	return chain[len(chain)-1].AuthorityKeyId
}

// issuerRootKeyID is the key ID of the root the issuer descends from: its
// own SubjectKeyId when it is the (self-signed) root, else its
// AuthorityKeyId.
func issuerRootKeyID(iss ca.Issuer) []byte {
	if iss.Cert == nil {
		return nil
	}
	if len(iss.Cert.AuthorityKeyId) == 0 || bytes.Equal(iss.Cert.AuthorityKeyId, iss.Cert.SubjectKeyId) {
		return iss.Cert.SubjectKeyId
	}
	return iss.Cert.AuthorityKeyId
}

// rootSwitched reports whether the CA now issues from another root than
// the one the credential descends from.
func (c *selfCred) rootSwitched() bool {
	if c.curr == nil {
		return false
	}
	want := issuerRootKeyID(c.ca.Issuer())
	return len(want) > 0 && !bytes.Equal(rootKeyID(c.curr.Certificates), want)
}
