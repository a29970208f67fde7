package auditremote

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/tlog"
	"github.com/tier0-ca/tier0/internal/witness"
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
// key of one of the audit key certificates logKeys (the ones the auditor
// pinned, e.g. from `tier0 audit checkpoint --cert-out`), not merely by
// some audit key of the bundle. Keys are compared, so a re-issued
// certificate of the same key matches (witness.SameLogKey).
func CheckLogKey(p *tlog.Proof, logKeys ...*x509.Certificate) error {
	ders := make([][]byte, len(logKeys))
	for i, c := range logKeys {
		ders[i] = c.Raw
	}
	if !witness.SameLogKey(p.AuditCert, ders...) || (p.Kind == tlog.KindConsistency && !witness.SameLogKey(p.OldAuditCert, ders...)) {
		return fmt.Errorf("the proof's checkpoint is signed by another audit key than --log-key")
	}
	return nil
}
