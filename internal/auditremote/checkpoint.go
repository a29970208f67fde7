package auditremote

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"time"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/tlog"
)

// Checkpoint is a tree checkpoint fetched from the server and verified.
type Checkpoint struct {
	tlog.Checkpoint
	Note     []byte // the signed note with any cosignature lines
	CertDER  []byte // the audit key certificate that signed it
	SignedAt time.Time
}

// Fetch returns the server's tree checkpoint of size (0: the newest),
// verified: its audit key certificate chains to roots and signed it.
func Fetch(ctx context.Context, c tier0v1.AuditLogClient, size int64, roots []*x509.Certificate) (Checkpoint, error) {
	resp, err := c.GetTreeCheckpoint(ctx, &tier0v1.GetTreeCheckpointRequest{Size: size})
	if err != nil {
		return Checkpoint{}, err
	}
	cp, err := tlog.Open(resp.GetNote(), resp.GetCertDer(), roots)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("auditremote: tree checkpoint %d: %w", resp.GetSize(), err)
	}
	if cp.Size != resp.GetSize() {
		return Checkpoint{}, fmt.Errorf("auditremote: the server labelled a checkpoint of size %d as size %d", cp.Size, resp.GetSize())
	}
	return Checkpoint{Checkpoint: cp, Note: resp.GetNote(), CertDER: resp.GetCertDer(), SignedAt: time.UnixMicro(resp.GetSignedAt()).UTC()}, nil
}

// CheckLogKey checks that every checkpoint of the proof is signed by the
// audit key certificate logKey (the one the auditor pinned, e.g. from
// `tier0 audit checkpoint --cert-out`), not merely by some audit key of
// the bundle.
func CheckLogKey(p *tlog.Proof, logKey *x509.Certificate) error {
	if !bytes.Equal(p.AuditCert, logKey.Raw) || (p.Kind == tlog.KindConsistency && !bytes.Equal(p.OldAuditCert, logKey.Raw)) {
		return fmt.Errorf("the proof's checkpoint is signed by another audit key than --log-key (%s)", logKey.Subject.CommonName)
	}
	return nil
}
