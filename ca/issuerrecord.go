package ca

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"sync/atomic"

	"github.com/tier0-ca/tier0/ca/record"
)

// issuerLog tracks whether an intermediate's own certificate is in the
// journal: mu is held by the batch that carries it, done is set once that
// batch committed.
type issuerLog struct {
	turn chan struct{} // a one-slot lock a waiter can give up on (ctx)
	done atomic.Bool
}

func newIssuerLog() *issuerLog { return &issuerLog{turn: make(chan struct{}, 1)} }

// commitFrom commits recs, the certificates st signed. The first batch a
// delegated intermediate signs carries, before them, a record of the
// intermediate itself (its full DER, issued by the root), so that the log
// links every SVID's issuer_key_id to a root of the bundle: a verifier
// checks the chain with the bundle alone (storage.CertChecker). A root
// (self-signed, in the bundle) is not recorded. Until that first batch has
// committed, the batches signed meanwhile wait for it and, if it failed,
// the next one carries the intermediate: no SVID is committed before the
// certificate of its issuer (an earlier design let them commit without it,
// and a failed carrying batch followed by a stop left SVIDs whose issuer
// was never in the log).
func (c *CA) commitFrom(ctx context.Context, st *issuerState, recs []*record.Record, keys []uint64) error {
	cert := st.iss.Cert
	if !c.cfg.RecordIssuers || bytes.Equal(cert.RawIssuer, cert.RawSubject) {
		return c.commitKeyed(ctx, recs, keys)
	}
	v, ok := c.recorded.Load(st.skiHex)
	if !ok {
		v, _ = c.recorded.LoadOrStore(st.skiHex, newIssuerLog())
	}
	il := v.(*issuerLog)
	if il.done.Load() {
		return c.commitKeyed(ctx, recs, keys)
	}
	select {
	case il.turn <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("ca: waiting for the intermediate's record to commit: %w", ctx.Err())
	}
	defer func() { <-il.turn }()
	if il.done.Load() {
		return c.commitKeyed(ctx, recs, keys)
	}
	batch := append([]*record.Record{IssuerRecord(cert, c.cfg.NodeID)}, recs...)
	if keys != nil {
		keys = append([]uint64{0}, keys...) // the intermediate's record has no idempotency key
	}
	if err := c.commitKeyed(ctx, batch, keys); err != nil {
		return err
	}
	il.done.Store(true)
	return nil
}

// IssuerRecord returns the journal record of a CA certificate the CA
// issued to itself (an intermediate): SPIFFEID is its URI SAN (the trust
// domain), IssuerKeyID its AuthorityKeyId (the root's SubjectKeyId).
func IssuerRecord(cert *x509.Certificate, nodeID string) *record.Record {
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	var id string
	if len(cert.URIs) == 1 {
		id = cert.URIs[0].String()
	}
	return &record.Record{
		Serial: cert.SerialNumber.Text(16), SPIFFEID: id,
		NotBefore: record.Truncate(cert.NotBefore), NotAfter: record.Truncate(cert.NotAfter),
		IssuerKeyID: hex.EncodeToString(cert.AuthorityKeyId), PublicKeySHA256: hex.EncodeToString(spki[:]),
		NodeID: nodeID, CertDER: bytes.Clone(cert.Raw),
	}
}
