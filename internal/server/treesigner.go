package server

import (
	"context"
	"crypto/x509"

	"github.com/tier0-ca/tier0/internal/server/keys"
	"github.com/tier0-ca/tier0/internal/tlog"
)

// runTreeSigner signs Merkle tree checkpoints of the record store while
// this node leads (internal/tlog.RunSigner), every checkpoint interval.
func runTreeSigner(ctx context.Context, r *run, store tlog.SignerStore, ak *keys.AuditKey) error {
	cfg := r.s.cfg
	node := r.node
	return tlog.RunSigner(ctx, tlog.SignerConfig{
		Store: store, Leader: node.IsLeader, Signer: ak.Signer(), CertDER: ak.CertDER,
		Roots: func() []*x509.Certificate {
			var out []*x509.Certificate
			for _, der := range node.Bundle().Roots {
				if c, err := x509.ParseCertificate(der); err == nil {
					out = append(out, c)
				}
			}
			return out
		},
		Origin: tlog.Origin(cfg.TrustDomain.Name()), Interval: cfg.Audit.CheckpointInterval, Logger: r.s.log,
	})
}
