package tlog

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"log/slog"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
)

// SignerStore is what the tree signer reads and writes: the records, the
// signed chain checkpoints and the tree checkpoints.
type SignerStore interface {
	Ranger
	Checkpoints(ctx context.Context, from, to uint64) ([]record.Checkpoint, error)
	storage.TreeStore
}

// SignerConfig configures RunSigner.
type SignerConfig struct {
	Store    SignerStore
	Leader   func() bool                // sign only while this is true (the Raft leader)
	Signer   crypto.Signer              // the audit key
	CertDER  func() []byte              // its certificate
	Roots    func() []*x509.Certificate // the bundle, to verify the chain checkpoints read from the store
	Origin   string                     // Origin(trust domain)
	Interval time.Duration              // between rounds; default 1m
	Clock    func() time.Time           // default time.Now
	Logger   *slog.Logger
}

// RunSigner signs tree checkpoints while cfg.Leader() until ctx ends: each
// round it takes the newest signed chain checkpoint in the store (seq N,
// head H) beyond the last tree it signed, extends its in-memory tree with
// the store's records up to N (checking the hash chain, and that record
// N hashes to H, so the tree holds exactly the journal's records), and
// stores a C2SP checkpoint note of size N and the tree's root, signed by
// the audit key. A round that fails is logged and retried from scratch.
func RunSigner(ctx context.Context, cfg SignerConfig) error {
	if cfg.Store == nil || cfg.Leader == nil || cfg.Signer == nil || cfg.CertDER == nil || cfg.Roots == nil || cfg.Origin == "" {
		return fmt.Errorf("tlog: signer: store, leader, signer, certificate, roots and origin are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	var tree *Tree
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if !cfg.Leader() {
			tree = nil
			continue
		}
		if tree == nil {
			tree = &Tree{}
		}
		if err := SignRound(ctx, cfg, tree); err != nil {
			if err.Error() != lastErr { // once per distinct failure (a pruned store fails every round)
				cfg.Logger.Warn("tlog: tree checkpoint not signed; retrying from the start every round", "error", err.Error())
			}
			lastErr = err.Error()
			tree = nil
			continue
		}
		lastErr = ""
	}
}

// SignRound is one round of RunSigner over tree (kept between rounds).
func SignRound(ctx context.Context, cfg SignerConfig, tree *Tree) error {
	cps, err := cfg.Store.Checkpoints(ctx, uint64(tree.Size())+1, 0)
	if err != nil {
		return err
	}
	roots := cfg.Roots()
	var newest *record.Checkpoint
	for i := len(cps) - 1; i >= 0; i-- {
		if cps[i].Verify(roots) == nil {
			newest = &cps[i]
			break
		}
	}
	if newest == nil {
		return nil
	}
	if err := tree.Extend(ctx, cfg.Store, newest.Seq, newest.Head); err != nil {
		return err
	}
	root, err := tree.Root(tree.Size())
	if err != nil {
		return err
	}
	cert := cfg.CertDER()
	note, err := Sign(Checkpoint{Origin: cfg.Origin, Size: tree.Size(), Root: root}, cfg.Signer, cert)
	if err != nil {
		return err
	}
	return cfg.Store.AppendTreeCheckpoint(ctx, storage.TreeCheckpoint{Size: tree.Size(), Note: note, CertDER: cert, SignedAt: cfg.Clock()})
}
