// Package auditchain links a recorded certificate to a root of the trust
// bundle through the CA certificates the log records (intermediates,
// ca/issuerrecord.go), so an auditor can follow a record's issuer_key_id
// up to a root (`tier0 audit show`).
package auditchain

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
)

// Link is one certificate of a chain: the leaf, an intermediate from the
// log (Seq its record) or the root from the bundle (Seq 0, Root true).
type Link struct {
	Cert *x509.Certificate
	Seq  uint64
	Root bool
}

// Candidate is a recorded certificate that may issue others.
type Candidate struct {
	Seq uint64
	DER []byte
}

// ErrBroken: the chain does not reach a root of the bundle.
var ErrBroken = errors.New("auditchain: no chain to the bundle")

// maxDepth bounds the walk (tier0 issues root -> intermediate -> leaf).
const maxDepth = 8

// Build returns the chain of leaf (leaf first, root last): each next
// certificate is the one whose SubjectKeyId is the previous one's
// AuthorityKeyId and whose signature verifies, taken from the recorded
// CA certificates or, to end, the roots. A chain that stops before a root
// is returned as far as it goes, with an error wrapping ErrBroken.
func Build(leaf []byte, cands []Candidate, roots [][]byte) ([]Link, error) {
	c, err := x509.ParseCertificate(leaf)
	if err != nil {
		return nil, fmt.Errorf("auditchain: leaf: %w", err)
	}
	var rs, ints []Link
	for _, r := range roots {
		if rc, err := x509.ParseCertificate(r); err == nil {
			rs = append(rs, Link{Cert: rc, Root: true})
		}
	}
	for _, x := range cands {
		if ic, err := x509.ParseCertificate(x.DER); err == nil && ic.IsCA {
			ints = append(ints, Link{Cert: ic, Seq: x.Seq})
		}
	}
	chain := []Link{{Cert: c}}
	for range maxDepth {
		cur := chain[len(chain)-1].Cert
		if p := parent(cur, rs); p != nil {
			return append(chain, *p), nil
		}
		p := parent(cur, ints)
		if p == nil || bytes.Equal(p.Cert.Raw, cur.Raw) {
			break
		}
		chain = append(chain, *p)
	}
	last := chain[len(chain)-1].Cert
	return chain, fmt.Errorf("%w: no recorded certificate or root has key ID %s (the issuer of %s)", ErrBroken,
		hex.EncodeToString(last.AuthorityKeyId), last.Subject)
}

func parent(c *x509.Certificate, from []Link) *Link {
	for i := range from {
		p := from[i].Cert
		if len(c.AuthorityKeyId) > 0 && !bytes.Equal(p.SubjectKeyId, c.AuthorityKeyId) {
			continue
		}
		if c.CheckSignatureFrom(p) == nil {
			return &from[i]
		}
	}
	return nil
}
