package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/redact"
	"github.com/tier0-ca/tier0/signer"
	"github.com/tier0-ca/tier0/signer/soft"
	"github.com/tier0-ca/tier0/storage"
)

// Audit wiring of `tier0 server` (docs/AUDIT.md): the audit key and signed
// checkpoints, authorization decisions, the bounded journal and the record
// store's start-up errors.

const devAuditKeyURI = "soft:ca/audit.key" // relative to the data dir

type auditFlags struct {
	auditKey        string
	cpEvery         int
	cpInterval      time.Duration
	decisions       string
	maxUnexported   int
	onJournalFull   string
	auditCertTTL    time.Duration
	decisionsBuffer int
}

func (a *auditFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&a.auditKey, "audit-key", "", "signer URI of the audit key that signs checkpoints (pkcs11:, awskms:, gcpkms:, soft:); default soft:DATA/ca/audit.key (DEV-ONLY)")
	fl.IntVar(&a.cpEvery, "checkpoint-every", ha.DefaultCheckpointEvery, "sign a checkpoint every this many records")
	fl.DurationVar(&a.cpInterval, "checkpoint-interval", ha.DefaultCheckpointInterval, "sign a checkpoint at least this often while records arrive")
	fl.StringVar(&a.decisions, "decisions", "all", "record authorization decisions: all, deny, sample:RATE (all denials, RATE of allows, e.g. sample:0.01) or off")
	fl.IntVar(&a.maxUnexported, "max-unexported", 1_000_000, "records waiting for export above which the journal is full (0: no limit)")
	fl.StringVar(&a.onJournalFull, "on-journal-full", "keep-issuing", "when the journal is full: keep-issuing (alert only) or fail-closed (mint answers Unavailable)")
	fl.DurationVar(&a.auditCertTTL, "audit-cert-ttl", 365*24*time.Hour, "lifetime of the audit key certificate (capped at the root's)")
	fl.IntVar(&a.decisionsBuffer, "decisions-buffer", 100_000, "decisions held in memory while the record store is unreachable (then dropped and counted)")
}

func (a *auditFlags) validate() error {
	if a.cpEvery <= 0 || a.cpInterval <= 0 {
		return fmt.Errorf("--checkpoint-every and --checkpoint-interval must be positive")
	}
	if _, _, err := parseDecisionMode(a.decisions); err != nil {
		return err
	}
	if a.maxUnexported < 0 {
		return fmt.Errorf("--max-unexported %d: must be 0 (no limit) or positive", a.maxUnexported)
	}
	if a.onJournalFull != "keep-issuing" && a.onJournalFull != "fail-closed" {
		return fmt.Errorf("--on-journal-full %q: want keep-issuing or fail-closed", a.onJournalFull)
	}
	return nil
}

// openRecordStore opens the record store with an error that says what to do.
func openRecordStore(ctx context.Context, dsn string) (storage.AuditStore, error) {
	octx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	s, err := storage.OpenAudit(octx, dsn)
	if err != nil {
		return nil, storeOpenError(dsn, err)
	}
	return s, nil
}

// openServerStore opens the server's record store. With optional
// (--store-optional) a store that cannot be reached yet does not stop the
// server: it connects (and migrates) in the background while the exporter
// retries and the journal keeps the records.
func openServerStore(ctx context.Context, dsn string, optional bool, log *slog.Logger) (storage.AuditStore, error) {
	if !optional {
		return openRecordStore(ctx, dsn)
	}
	s, err := storage.OpenLazy(ctx, dsn, storage.LazyConfig{Logger: log, Describe: redactDSN(dsn)})
	if err != nil {
		return nil, storeOpenError(dsn, err)
	}
	return s, nil
}

func storeOpenError(dsn string, err error) error {
	if errors.Is(err, storage.ErrSchemaTooNew) {
		return fmt.Errorf("record store: refusing to start: %w (a newer tier0 migrated this database; run that version, or restore a backup taken before the upgrade)", err)
	}
	return fmt.Errorf("record store: cannot open %s: %w (check --store and that the database is up; nothing was issued)", redactDSN(dsn), err)
}

// redactDSN masks the credentials of a URL-style DSN (internal/redact).
func redactDSN(dsn string) string { return redact.URL(dsn) }

// auditWiring connects the audit features to a running node.
type auditWiring struct {
	f      *auditFlags
	td     spiffeid.TrustDomain
	dir    string
	nodeID string
	log    *slog.Logger
	reg    prometheus.Registerer
	dec    *decisionLog
	full   atomic.Bool
}

func newAuditWiring(f *auditFlags, td spiffeid.TrustDomain, dir, nodeID string, log *slog.Logger, reg prometheus.Registerer) *auditWiring {
	mode, rate, _ := parseDecisionMode(f.decisions)
	return &auditWiring{f: f, td: td, dir: dir, nodeID: nodeID, log: log, reg: reg,
		dec: newDecisionLog(mode, rate, nodeID, f.decisionsBuffer, log, reg)}
}

// authorizer records next's decisions.
func (w *auditWiring) authorizer(next ca.Authorizer) ca.Authorizer { return w.dec.wrap(next) }

// journal is node's journal with the --on-journal-full policy.
func (w *auditWiring) journal(node *ha.Node) ca.Journal {
	return &boundedJournal{node: node, w: w}
}

type boundedJournal struct {
	node *ha.Node
	w    *auditWiring
}

// errJournalFull is returned by Commit under --on-journal-full fail-closed.
var errJournalFull = errors.New("journal full")

func (j *boundedJournal) Commit(ctx context.Context, recs []*record.Record) error {
	if j.w.f.onJournalFull == "fail-closed" && j.w.full.Load() {
		return fmt.Errorf("%w: %w: more than %d issued records wait for export to the record store (is it down?); "+
			"refusing to issue because --on-journal-full=fail-closed", ha.ErrUnavailable, errJournalFull, j.w.f.maxUnexported)
	}
	return j.node.Commit(ctx, recs)
}

// watchJournal sets w.full from the export backlog, with a metric and a
// loud log line on each change (and every minute while full).
func (w *auditWiring) watchJournal(ctx context.Context, node *ha.Node) {
	full := prometheus.NewGauge(prometheus.GaugeOpts{Name: "tier0_journal_full",
		Help: "1 while unexported records exceed --max-unexported."})
	limit := prometheus.NewGauge(prometheus.GaugeOpts{Name: "tier0_journal_unexported_limit",
		Help: "The --max-unexported limit (0: none)."})
	if w.reg != nil {
		w.reg.MustRegister(full, limit)
	}
	limit.Set(float64(w.f.maxUnexported))
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var lastLog time.Time
	for {
		un := node.JournalStatus().Unexported
		isFull := w.f.maxUnexported > 0 && un >= w.f.maxUnexported
		was := w.full.Swap(isFull)
		switch {
		case isFull && (!was || time.Since(lastLog) > time.Minute):
			full.Set(1)
			lastLog = time.Now()
			w.log.Error("JOURNAL FULL: issued records are not reaching the record store", "unexported", un,
				"max_unexported", w.f.maxUnexported, "on_journal_full", w.f.onJournalFull,
				"effect", map[bool]string{true: "mint refused (Unavailable)", false: "still issuing; raft state and snapshots grow"}[w.f.onJournalFull == "fail-closed"])
		case !isFull && was:
			full.Set(0)
			w.log.Info("journal no longer full: export caught up", "unexported", un)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// start runs the checkpointer, the decision writer and the journal watch.
func (w *auditWiring) start(ctx context.Context, node *ha.Node, keys *keyManager, store storage.AuditStore) error {
	ak, err := w.openAuditKey(ctx, node, keys)
	if err != nil {
		return err
	}
	go func() {
		err := node.RunCheckpointer(ctx, ha.CheckpointConfig{Signer: ak.signer, CertDER: ak.certDER,
			Every: w.f.cpEvery, Interval: w.f.cpInterval, Registerer: w.reg})
		if err != nil && ctx.Err() == nil {
			w.log.Error("checkpointer stopped", "err", err)
		}
	}()
	go w.dec.run(ctx, store)     //nolint:gosec // G118: runs for the server's lifetime, ctx is the server's
	go w.watchJournal(ctx, node) //nolint:gosec // G118: runs for the server's lifetime, ctx is the server's
	return nil
}

// auditKey is the checkpoint signing key and its certificate, re-issued by
// the active CA root when the root changes.
type auditKey struct {
	signer crypto.Signer
	w      *auditWiring
	node   *ha.Node
	keys   *keyManager

	mu     sync.Mutex
	rootID string
	cert   []byte
}

func (w *auditWiring) openAuditKey(ctx context.Context, node *ha.Node, keys *keyManager) (*auditKey, error) {
	uri := w.f.auditKey
	if uri == "" {
		uri = devAuditKeyURI
		path := filepath.Join(w.dir, "ca", "audit.key")
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			w.log.Warn("DEV-ONLY: generating a software audit key on disk; use an HSM or KMS key (--audit-key) in production", "path", path)
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return nil, fmt.Errorf("audit key: %w", err)
			}
			if err := soft.Generate(path); err != nil {
				return nil, fmt.Errorf("audit key: generate: %w", err)
			}
		}
	}
	if p, ok := strings.CutPrefix(uri, "soft:"); ok && !filepath.IsAbs(strings.TrimPrefix(p, "//")) {
		uri = "soft:" + filepath.Join(w.dir, strings.TrimPrefix(p, "//"))
	}
	s, err := signer.Open(ctx, uri, signer.Options{Logger: w.log})
	if err != nil {
		return nil, fmt.Errorf("audit key: open: %w", err)
	}
	ak := &auditKey{signer: s, w: w, node: node, keys: keys}
	if _, err := ak.refresh(ctx); err != nil {
		return nil, err
	}
	w.log.Info("audit key ready", "key", s.KeyID(), "checkpoint_every", w.f.cpEvery, "checkpoint_interval", w.f.cpInterval)
	return ak, nil
}

// certDER returns the certificate, re-issuing it after a root change.
func (k *auditKey) certDER() []byte {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	der, err := k.refresh(ctx)
	if err != nil {
		k.w.log.Error("audit key: re-issue certificate", "err", err)
	}
	return der
}

func (k *auditKey) refresh(ctx context.Context) ([]byte, error) {
	root, ok := k.node.CAState().Active()
	if !ok {
		return nil, errors.New("audit key: no active CA root")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if root.ID == k.rootID && k.cert != nil {
		return k.cert, nil
	}
	rs, err := k.keys.open(ctx, root.KeyURI)
	if err != nil {
		return k.cert, fmt.Errorf("audit key: root key: %w", err)
	}
	rc, err := x509.ParseCertificate(root.CertDER)
	if err != nil {
		return k.cert, fmt.Errorf("audit key: root %s: %w", root.ID, err)
	}
	cert, err := ca.NewAuditKeyCert(k.w.td, ca.Issuer{Signer: rs, Cert: rc}, k.signer.Public(), k.w.f.auditCertTTL, time.Now())
	if err != nil {
		return k.cert, fmt.Errorf("audit key: certificate: %w", err)
	}
	k.rootID, k.cert = root.ID, cert.Raw
	return k.cert, nil
}
