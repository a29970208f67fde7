package drill

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/backupfile"
	"github.com/tier0-ca/tier0/internal/operator"
	"github.com/tier0-ca/tier0/internal/restore"
	"github.com/tier0-ca/tier0/internal/server"
	"github.com/tier0-ca/tier0/storage"
)

// RestoreReport is the report of the restore drill (`tier0 drill restore`).
type RestoreReport struct {
	OK          bool               `json:"ok"`
	RTOSeconds  float64            `json:"rto_seconds"` // backup start -> first good probe SVID
	Phases      map[string]float64 `json:"phase_seconds"`
	RPO         RPO                `json:"rpo"`
	ProbeSerial string             `json:"probe_serial,omitempty"`
	ProbeSeq    uint64             `json:"probe_seq,omitempty"`
	Checks      []Check            `json:"checks"`
	ScratchDir  string             `json:"scratch_dir,omitempty"` // only with --keep
	Error       string             `json:"error,omitempty"`
}

// RPO is the data point the restore brings back.
type RPO struct {
	JournalSeq  uint64    `json:"journal_seq"`
	JournalHead string    `json:"journal_head"`
	LastCommit  time.Time `json:"last_commit"` // CommittedAt of the last record in the backup
	BackupAt    time.Time `json:"backup_at"`
	RaftIndex   uint64    `json:"raft_index"`
}

type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

func (d *RestoreReport) check(name string, ok bool, format string, a ...any) bool {
	d.Checks = append(d.Checks, Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, a...)})
	return ok
}

// Print writes the report as text.
func (d *RestoreReport) Print(w io.Writer) {
	verdict := "PASSED"
	if !d.OK {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "restore drill %s\n", verdict)
	fmt.Fprintf(w, "  RTO  %.2fs from backup start to the first good probe SVID", d.RTOSeconds)
	fmt.Fprintf(w, " (backup %.2fs, restore %.2fs, start %.2fs, probe %.2fs)\n", d.Phases["backup"], d.Phases["restore"], d.Phases["start"], d.Phases["probe"])
	fmt.Fprintf(w, "  RPO  journal seq %d (head %.16s…), last record committed %s, backup taken %s\n",
		d.RPO.JournalSeq, d.RPO.JournalHead, d.RPO.LastCommit.Format(time.RFC3339Nano), d.RPO.BackupAt.Format(time.RFC3339Nano))
	for _, c := range d.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s %-14s %s\n", mark, c.Name, c.Detail)
	}
	if d.ScratchDir != "" {
		fmt.Fprintf(w, "  scratch data dir kept: %s\n", d.ScratchDir)
	}
	if d.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", d.Error)
	}
}

// RestoreConfig configures Restore.
type RestoreConfig struct {
	Source operator.Options // the running CA to back up (admin credential)
	Binary string           // tier0 binary for the scratch node; "": this executable
	Keep   bool             // keep the scratch data dir (its path goes into the report)
	// Env is the scratch node's environment. The node runs on its own
	// flags only: leave out the TIER0_<FLAG> variables (TIER0_CONFIG,
	// TIER0_JOIN, a pod's TIER0_RAFT_ADVERTISE) that describe the real
	// server. nil: this process's environment.
	Env []string
}

// Restore backs up the running CA, restores it into a scratch node on
// loopback, verifies it and issues a probe SVID, filling d as it goes; d.OK
// says whether every check passed.
func Restore(ctx context.Context, cfg RestoreConfig, d *RestoreReport) error {
	if d.Phases == nil {
		d.Phases = map[string]float64{}
	}
	bin, keep := cfg.Binary, cfg.Keep
	scratch, err := os.MkdirTemp("", "tier0-drill-restore-")
	if err != nil {
		return fmt.Errorf("scratch dir: %w", err)
	}
	if keep {
		d.ScratchDir = scratch
	} else {
		defer os.RemoveAll(scratch)
	}
	start := time.Now()
	phase := func(name string, since time.Time) time.Time {
		now := time.Now()
		d.Phases[name] = now.Sub(since).Seconds()
		return now
	}
	// 1. Backup (with the dev key, sealed under a throw-away passphrase,
	// when the CA roots are soft keys; an HSM/KMS key is used in place).
	pass := []byte(hex.EncodeToString(randBytes(24)))
	bak := filepath.Join(scratch, "backup.tier0")
	res, err := operator.BackupFromLeader(ctx, cfg.Source, bak, true, pass)
	if errors.Is(err, operator.ErrNoDevKey) {
		pass = nil
		res, err = operator.BackupFromLeader(ctx, cfg.Source, bak, false, nil)
	}
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	m := res.Manifest
	d.RPO = RPO{JournalSeq: m.Journal.Seq, JournalHead: m.Journal.Head, LastCommit: m.Journal.LastCommit, BackupAt: m.CreatedAt, RaftIndex: m.Raft.Index}
	t := phase("backup", start)

	// 2. Restore into the scratch dir.
	dataDir := filepath.Join(scratch, "data")
	rres, err := restore.Run(ctx, restore.Config{DataDir: dataDir, From: bak, NodeID: "drill", Passphrase: pass, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	t = phase("restore", t)

	// 3. Start the scratch node on loopback, random ports, its own store.
	sn, err := startScratchNode(ctx, bin, cfg.Env, dataDir, m.TrustDomain)
	if err != nil {
		return err
	}
	defer sn.stop()
	t = phase("start", t)

	// 4. Probe SVID from the scratch node, verified against the source's bundle.
	_, info, err := backupfile.Verify(bak)
	if err != nil {
		return err
	}
	probe, err := sn.probe(ctx, info.Bundle)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	phase("probe", t)
	d.RTOSeconds = time.Since(start).Seconds()
	d.ProbeSerial = probe.serial
	d.check("probe", true, "SVID %s serial %s verified (go-spiffe x509svid.Verify) against the source's bundle", probe.id, probe.serial)

	// 5. Compare state and chain.
	ok := d.check("journal head", rres.Seq == m.Journal.Seq && rres.Head == m.Journal.Head, "restored seq %d head %.16s…, backup seq %d head %.16s…", rres.Seq, rres.Head, m.Journal.Seq, m.Journal.Head)
	ok = d.check("bundle", bytes.Equal(sn.bundlePEM(), server.PEMCerts(info.Bundle.Roots...)), "%d roots served by the scratch node, same as the backup's", len(info.Bundle.Roots)) && ok
	ids, err := sn.entryIDs(ctx)
	if err != nil {
		return err
	}
	want := append(slices.Clone(info.EntryIDs), probe.entryID)
	slices.Sort(want)
	ok = d.check("entries", slices.Equal(ids, want),
		"%d entries restored (+1 probe entry), ids equal", len(info.EntryIDs)) && ok
	chain, err := sn.chainAfter(ctx, m, probe.serial)
	if err != nil {
		return err
	}
	d.ProbeSeq = chain.probeSeq
	ok = d.check("chain", chain.linked && chain.probeSeq > m.Journal.Seq, "record %d links to the backup head; probe record at seq %d; %d new records verified", m.Journal.Seq+1, chain.probeSeq, chain.n) && ok
	d.OK = ok
	return nil
}

type chainCheck struct {
	linked   bool
	probeSeq uint64
	n        int
	seen     map[uint64]bool // records taken, to take each once
}

// chainAfter checks that the records after the restore point link to the
// backup's head: those the scratch node exported to its own store (a new
// lineage's store, starting after the backup's exported seq), then those
// still in its journal (from a backup of it).
func (s *scratchNode) chainAfter(ctx context.Context, m backupfile.Manifest, serial string) (chainCheck, error) {
	cc := chainCheck{seen: map[uint64]bool{}}
	head, _ := hex.DecodeString(m.Journal.Head)
	visit := func(r *record.Record) error {
		if r.Seq <= m.Journal.Seq || cc.seen[r.Seq] {
			return nil
		}
		if r.Seq == m.Journal.Seq+1 {
			cc.linked = bytes.Equal(r.PrevHash, head)
		}
		cc.n++
		cc.seen[r.Seq] = true
		if r.Serial == serial {
			cc.probeSeq = r.Seq
		}
		return nil
	}
	// The journal first, the store after: a record the exporter moves to
	// the store in between is in one of the two either way (the other
	// order missed it: exported after the store was read, so no longer in
	// the journal's unexported tail the backup holds).
	if err := s.journalAfter(ctx, visit); err != nil {
		return cc, err
	}
	store, err := storage.Open(ctx, "sqlite:"+filepath.Join(s.dir, "records.db"))
	if err != nil {
		return cc, fmt.Errorf("scratch node store: %w", err)
	}
	err = store.Range(ctx, m.Journal.Seq+1, 0, visit)
	store.Close()
	if err != nil {
		return cc, fmt.Errorf("scratch node store: %w", err)
	}
	return cc, nil
}

// journalAfter walks the records in a fresh backup of the scratch node's
// journal.
func (s *scratchNode) journalAfter(ctx context.Context, visit func(*record.Record) error) error {
	c, err := s.admin(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	path := filepath.Join(s.dir, "..", "after.tier0")
	if _, err := operator.Backup(ctx, c, path, false, nil); err != nil {
		return fmt.Errorf("backup of the scratch node: %w", err)
	}
	b, err := backupfile.Open(path)
	if err != nil {
		return err
	}
	defer b.Close()
	if _, err = ha.WalkSnapshot(b.Payload(), visit); err != nil {
		return fmt.Errorf("scratch node journal: %w", err)
	}
	return nil
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
