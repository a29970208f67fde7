// Package restore bootstraps a new single node (or the first node of a
// new cluster) from a backup file (`tier0 backup restore`, the restore
// drill).
package restore

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/atomicfile"
	"github.com/tier0-ca/tier0/internal/backupfile"
	"github.com/tier0-ca/tier0/storage"
)

// Result is what a restore did.
type Result struct {
	NodeID      string   `json:"node_id"`
	TrustDomain string   `json:"trust_domain"`
	BackupSeq   uint64   `json:"backup_seq"`
	CaughtUp    uint64   `json:"caught_up_from_store"`
	Seq         uint64   `json:"seq"`
	Head        string   `json:"head"`
	Entries     int      `json:"entries"`
	Tokens      int      `json:"tokens"`
	BundleRoots int      `json:"bundle_roots"`
	DevKeys     int      `json:"dev_keys"`
	Lineage     string   `json:"lineage"`               // the restored journal's cluster and lineage
	NewLineage  bool     `json:"new_lineage,omitempty"` // restored without a store: a new lineage
	Seconds     float64  `json:"seconds"`
	Warnings    []string `json:"warnings,omitempty"`
}

// Config configures Run.
type Config struct {
	DataDir     string       // where to restore; must be empty unless Force
	From        string       // the backup file
	Force       bool         // replace the raft state of a non-empty data dir (keeps records.db and keys)
	NodeID      string       // node ID of the restored node; default: the backup's
	TrustDomain string       // refuse a backup of any other trust domain ("": any)
	Passphrase  []byte       // restores the sealed DEV-ONLY soft keys (nil: they are not restored)
	Store       string       // record store DSN to catch the journal head up from ("": none)
	RaftAddr    string       // raft address recorded in the raft configuration ("": single node)
	Logger      *slog.Logger // raft's chatter is shown only at debug level
}

// Run verifies the backup, then creates DataDir's raft stores, bootstraps
// a one-voter cluster and installs the backup's snapshot with raft's user
// restore. With Store, the store must be the backup's (same lineage, its
// last record on the backup's chain); records that reached it after the
// backup was taken are verified to continue the backup's hash chain and
// the journal head moves to the store's last record. Without Store the
// journal starts a new lineage (ha.NewLineage): the old store refuses it,
// a new, empty one takes it (ha/DESIGN.md "Store identity").
func Run(ctx context.Context, f Config) (Result, error) {
	dir := f.DataDir
	if f.Logger == nil {
		f.Logger = slog.Default()
	}
	log := f.Logger
	start := time.Now()
	b, info, err := backupfile.Verify(f.From)
	if err != nil {
		return Result{}, err
	}
	defer b.Close()
	m := b.Manifest
	if f.TrustDomain != "" && f.TrustDomain != m.TrustDomain {
		return Result{}, fmt.Errorf("restore: %s is a backup of trust domain %q, not %q", f.From, m.TrustDomain, f.TrustDomain)
	}
	if f.NodeID == "" {
		f.NodeID = m.NodeID
	}
	pass := f.Passphrase
	if pass != nil && m.DevKeys == nil {
		return Result{}, errors.New("restore: --passphrase-file given but the backup holds no dev key")
	}
	var keys map[string][]byte
	if pass != nil {
		if keys, err = m.DevKeys.Open(pass, m.TrustDomain); err != nil {
			return Result{}, err
		}
	}
	if err := prepareDataDir(dir, f.Force); err != nil {
		return Result{}, err
	}
	res := Result{NodeID: f.NodeID, TrustDomain: m.TrustDomain, BackupSeq: m.Journal.Seq}
	for rel, pem := range keys {
		if p, ok := backupfile.DevKeyPath("soft:" + rel); !ok || p != rel {
			return res, fmt.Errorf("restore: dev key path %q is not inside the data dir", rel)
		}
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return res, fmt.Errorf("restore: %w", err)
		}
		if err := atomicfile.Write(path, pem, 0o600); err != nil {
			return res, fmt.Errorf("restore: dev key: %w", err)
		}
		res.DevKeys++
	}
	if m.DevKeys != nil && pass == nil {
		res.Warnings = append(res.Warnings, "the backup holds an encrypted dev key that was not restored (no --passphrase-file)")
	}
	for _, r := range info.CARoots {
		if rel, ok := backupfile.DevKeyPath(r.KeyURI); ok && keys[rel] == nil {
			if _, err := os.Stat(filepath.Join(dir, rel)); err != nil {
				res.Warnings = append(res.Warnings, fmt.Sprintf("CA root %s uses the soft key %s, which is not in %s: the server cannot sign with it", r.ID, rel, dir))
			}
		}
	}

	var meta raft.SnapshotMeta
	if err := json.Unmarshal(m.Raft.Meta, &meta); err != nil {
		return res, fmt.Errorf("restore: raft meta: %w", err)
	}
	var payload io.Reader = b.Payload()
	meta.Size = m.Payload.Size
	backupSeq := info.Seq
	var more func(fn func(*record.Record) error) error
	var lineage ha.SetLineage
	if f.Store == "" {
		lineage, res.NewLineage = ha.NewLineage(time.Now()), true
		res.Warnings = append(res.Warnings, "restored without --store: the journal starts a new lineage, which the old record store refuses; "+
			"point the server at a new, empty --store, or restore again with --store DSN to continue the old store's chain")
	} else {
		store, err := storage.Open(ctx, f.Store)
		if err != nil {
			return res, fmt.Errorf("restore: --store: %w", err)
		}
		defer store.Close()
		if more, lineage, err = continueStore(ctx, store, b, info); err != nil {
			return res, err
		}
	}
	if more != nil || lineage != nil {
		rw, err := rewritePayload(dir, b, more, lineage, &info)
		if err != nil {
			return res, err
		}
		defer os.Remove(rw.Name())
		defer rw.Close()
		st, _ := rw.Stat()
		payload, meta.Size, res.CaughtUp = rw, st.Size(), info.Seq-backupSeq
	}
	res.Lineage = "none yet (set by the server's exporter at start)"
	if info.Lineage != nil {
		res.Lineage = info.Lineage.String()
	}

	cfg := ha.Config{NodeID: f.NodeID, DataDir: dir, Bootstrap: true, Logger: quietLogger(log)}
	if f.RaftAddr != "" {
		_, cfg.Transport = raft.NewInmemTransport(raft.ServerAddress(f.RaftAddr))
	}
	node, err := ha.New(ctx, cfg)
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	defer node.Close()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := node.WaitLeader(wctx); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Minute)
	defer rcancel()
	if err := node.RestoreBackup(rctx, &meta, payload); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	js := node.JournalStatus()
	if js.Seq != info.Seq || hex.EncodeToString(js.Head) != hex.EncodeToString(info.Head) {
		return res, fmt.Errorf("restore: restored journal at seq %d, want %d", js.Seq, info.Seq)
	}
	res.Seq, res.Head = js.Seq, hex.EncodeToString(js.Head)
	res.Entries, res.Tokens, res.BundleRoots = len(node.ListEntries("")), info.Tokens, len(node.Bundle().Roots)
	if err := node.Close(); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// prepareDataDir refuses a data dir with anything in it unless force, and
// then removes only what a restore replaces: raft state and the files a
// server writes at start. The record store (records.db) and key files stay.
func prepareDataDir(dir string, force bool) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return os.MkdirAll(dir, 0o700)
	case err != nil:
		return fmt.Errorf("restore: %w", err)
	}
	if len(ents) == 0 {
		return nil
	}
	if !force {
		return fmt.Errorf("restore: data dir %s is not empty (%d entries): refusing to overwrite it (use an empty dir, or --force to replace its raft state)", dir, len(ents))
	}
	for _, name := range []string{"raft", "server.json", "bundle.pem", "admin", "auditor", "node"} {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("restore: --force: %w", err)
		}
	}
	return nil
}

// continueStore checks that the record store continues the backup's
// chain, in the same lineage, and returns what the restore must change:
// records the store got after the backup (more, nil: none) and, for a
// backup older than lineages, the store's lineage to adopt.
func continueStore(ctx context.Context, store storage.Store, b *backupfile.File, info ha.SnapshotInfo) (more func(fn func(*record.Record) error) error, lineage ha.SetLineage, err error) {
	sl, claimed, err := store.Lineage(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("restore: --store: %w", err)
	}
	last, err := store.LastSeq(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("restore: --store: %w", err)
	}
	notOurs := "it is not this backup's record store (restore without --store to start a new lineage, and point the server at a new, empty store)"
	if claimed && info.Lineage != nil && !sl.Same(*info.Lineage) {
		return nil, nil, fmt.Errorf("restore: --store holds %s, the backup is %s: %s", sl, info.Lineage, notOurs)
	}
	if last > info.Seq { // AdvanceSnapshot checks the chain from the backup's head
		more = func(fn func(*record.Record) error) error { return store.Range(ctx, info.Seq+1, last, fn) }
	} else {
		if last < info.ExportedSeq {
			return nil, nil, fmt.Errorf("restore: --store ends at seq %d, but the backup's journal had exported records up to seq %d to its store: %s", last, info.ExportedSeq, notOurs)
		}
		want, _, err := ha.SnapshotHashAt(b.Payload(), last)
		if err != nil {
			return nil, nil, fmt.Errorf("restore: %w", err)
		}
		got := record.Genesis
		if last > 0 {
			got = nil
			if err := store.Range(ctx, last, last, func(r *record.Record) error { got = r.Hash; return nil }); err != nil {
				return nil, nil, fmt.Errorf("restore: --store: %w", err)
			}
			if got == nil && claimed && last == sl.BaseSeq {
				got = sl.BaseHash
			}
		}
		if !bytes.Equal(got, want) {
			return nil, nil, fmt.Errorf("restore: --store's record %d is not the backup's record %d (the chains differ): %s", last, last, notOurs)
		}
	}
	if claimed && info.Lineage == nil { // a backup from before lineages: the chains agree, adopt the store's
		lineage = func(ha.SnapshotInfo, []byte) (*record.Lineage, error) { return &sl, nil }
	}
	return more, lineage, nil
}

// rewritePayload writes the backup's payload, advanced over more and with
// the lineage set (ha.RewriteSnapshot), to a temporary file in dir, and
// updates info.
func rewritePayload(dir string, b *backupfile.File, more func(fn func(*record.Record) error) error, lineage ha.SetLineage, info *ha.SnapshotInfo) (*os.File, error) {
	tmp, err := os.CreateTemp(dir, ".restore-payload-")
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	adv, err := ha.RewriteSnapshot(b.Payload(), tmp, more, lineage)
	if err == nil {
		_, err = tmp.Seek(0, io.SeekStart)
	}
	if err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("restore: rewrite the backup's journal: %w", err)
	}
	*info = adv
	return tmp, nil
}

// quietLogger keeps raft's chatter out of a CLI command unless debugging.
func quietLogger(log *slog.Logger) *slog.Logger {
	if log.Enabled(context.Background(), slog.LevelDebug) {
		return log
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}
