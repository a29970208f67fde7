package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"sync"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// Tainted keys (`tier0 ca taint`), from the bundle response of every sync:
// an X.509 SVID (the agent's own or a workload's) that descends from a
// tainted root is re-issued at once, at that sync, instead of at its
// renewal time; a cached JWT-SVID signed by a tainted JWT key is not
// served again (the next fetch mints a new one).

// taints holds the tainted keys the server last sent.
type taints struct {
	mu    sync.Mutex
	roots [][]byte // SubjectKeyIds of tainted roots
	kids  []string // tainted JWT key IDs
}

// setTaints replaces the tainted keys from a GetBundle response and
// reports whether they changed.
func (a *agent) setTaints(resp *tier0v1.GetBundleResponse) bool {
	var roots [][]byte
	for _, der := range resp.GetTaintedX509Authorities() {
		c, err := x509.ParseCertificate(der)
		if err != nil || len(c.SubjectKeyId) == 0 {
			continue // the server parsed it when it was added
		}
		roots = append(roots, c.SubjectKeyId)
	}
	kids := slices.Clone(resp.GetTaintedJwtKeyIds())
	a.taint.mu.Lock()
	defer a.taint.mu.Unlock()
	same := slices.EqualFunc(roots, a.taint.roots, bytes.Equal) && slices.Equal(kids, a.taint.kids)
	a.taint.roots, a.taint.kids = roots, kids
	return !same
}

// taintedChain reports whether chain descends from a tainted root: the
// AuthorityKeyId of its last certificate (the leaf in direct mode, the
// intermediate in delegated mode) is a tainted root's key ID.
func (a *agent) taintedChain(chain []*x509.Certificate) bool {
	if len(chain) == 0 {
		return false
	}
	aki := chain[len(chain)-1].AuthorityKeyId
	a.taint.mu.Lock()
	defer a.taint.mu.Unlock()
	return len(aki) > 0 && slices.ContainsFunc(a.taint.roots, func(k []byte) bool { return bytes.Equal(k, aki) })
}

// taintedJWT reports whether token was signed by a tainted JWT key (its
// header's kid); a token whose header does not parse is not tainted.
func (a *agent) taintedJWT(token string) bool {
	kid := jwtKID(token)
	if kid == "" {
		return false
	}
	a.taint.mu.Lock()
	defer a.taint.mu.Unlock()
	return slices.Contains(a.taint.kids, kid)
}

func jwtKID(token string) string {
	header, _, ok := strings.Cut(token, ".")
	if !ok {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		return ""
	}
	var h struct {
		KID string `json:"kid"`
	}
	if json.Unmarshal(raw, &h) != nil {
		return ""
	}
	return h.KID
}

// reissueTainted makes every cached SVID under a tainted root due now and
// returns how many.
func (c *cache) reissueTainted() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for id, s := range c.svids {
		if c.a.taintedChain(s.Certificates) {
			if _, scheduled := c.renewAt[id]; scheduled {
				delete(c.renewAt, id)
				n++
			}
		}
	}
	return n
}

// followTaints, at every sync: the agent SVID is renewed now when it
// descends from a tainted root, and so are the cached workload SVIDs (Run
// mints them right after the sync).
func (c *cache) followTaints(ctx context.Context) {
	log := c.e.logger()
	if c.a.taintedChain(c.a.current().Certificates) {
		if svid, err := c.e.renew(ctx, c.a); err != nil {
			log.WarnContext(ctx, "renewing the agent SVID under a tainted root failed", "err", describe(err))
		} else {
			log.InfoContext(ctx, "renewed agent SVID: its root is tainted", "id", svid.ID, "expires", svid.Certificates[0].NotAfter)
		}
	}
	if n := c.reissueTainted(); n > 0 {
		log.InfoContext(ctx, "re-issuing workload SVIDs: their root is tainted", "count", n)
	}
}
