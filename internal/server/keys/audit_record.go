package keys

import (
	"context"
	"crypto/x509"
	"time"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/internal/backoff"
)

// Journal commits records (implemented by *ha.Node).
type Journal interface {
	Commit(ctx context.Context, recs []*record.Record) error
}

// auditCertRecordFor bounds how long the manager tries to record an audit
// key certificate.
const auditCertRecordFor = 5 * time.Minute

// recordAuditCert commits the record of an audit key certificate just
// issued (ca.AuditKeyRecord: full DER, issuer the root), so that every
// certificate the CA issues is in the log. It runs in the background: the
// certificate authenticates nobody and signs only checkpoints, which the
// bundle verifies on its own, and the key is opened before the journal
// accepts records at start. A failure is retried, then logged.
func (m *Manager) recordAuditCert(cert *x509.Certificate) {
	if m.cfg.Journal == nil {
		return
	}
	rec := ca.AuditKeyRecord(m.cfg.TrustDomain, cert, m.cfg.State.LocalNodeID())
	m.bgWG.Add(1)
	go func() {
		defer m.bgWG.Done()
		ctx, cancel := context.WithTimeout(m.bg, auditCertRecordFor)
		defer cancel()
		wait := 100 * time.Millisecond
		for {
			r := *rec
			err := m.cfg.Journal.Commit(ctx, []*record.Record{&r})
			if err == nil {
				m.log.Info("audit key certificate recorded", "serial", rec.Serial, "seq", r.Seq)
				return
			}
			if ctx.Err() != nil {
				m.log.Error("audit key certificate NOT recorded in the journal", "serial", rec.Serial, "err", err)
				return
			}
			_ = backoff.Sleep(ctx, backoff.Jitter(wait, 0.2))
			wait = min(2*wait, 5*time.Second)
		}
	}()
}
