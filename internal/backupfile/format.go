// Package backupfile reads and writes tier0 backup files (format version 1;
// docs/OPERATIONS.md "Backup file format"):
//
//	"TIER0BACKUP\n"            12 bytes magic
//	uint32 big-endian          length of the manifest
//	manifest                   JSON (Manifest)
//	payload                    manifest.payload.size bytes: the raft snapshot (ha snapshot format)
//	SHA-256                    32 bytes over everything before it
//
// The trailing checksum catches truncation and corruption before anything
// is parsed; the manifest also carries the payload's own SHA-256. The
// DEV-ONLY soft key files may ride along, sealed under a passphrase
// (keys.go). The server streams the snapshot (api.BackupSource); the CLI
// writes the file (Create), checks it (Verify) and restores it
// (internal/restore).
package backupfile

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"time"

	"github.com/tier0-ca/tier0/ha"
)

const (
	// Magic starts every backup file.
	Magic = "TIER0BACKUP\n"
	// Format and Version are the manifest's format name and version.
	Format  = "tier0-backup"
	Version = 1

	maxManifest = 16 << 20
)

// ErrBadBackup marks a file that is not a complete, intact tier0 backup.
var ErrBadBackup = errors.New("not a valid tier0 backup")

// Manifest describes a backup: where and when it was taken, the raft
// position, the journal head it holds, counts of its state and the
// payload's size and SHA-256.
type Manifest struct {
	Format      string    `json:"format"`
	Version     int       `json:"version"`
	TrustDomain string    `json:"trust_domain"`
	NodeID      string    `json:"node_id"`
	CreatedAt   time.Time `json:"created_at"`
	Raft        struct {
		Index uint64          `json:"index"`
		Term  uint64          `json:"term"`
		Meta  json.RawMessage `json:"meta"` // raft.SnapshotMeta for raft's user restore
	} `json:"raft"`
	Journal struct {
		Seq         uint64    `json:"seq"`
		Head        string    `json:"head"` // hex
		ExportedSeq uint64    `json:"exported_seq"`
		Unexported  int       `json:"unexported"`
		LastCommit  time.Time `json:"last_commit"`
		Lineage     string    `json:"lineage,omitempty"` // cluster and lineage (informational; the snapshot holds it)
	} `json:"journal"`
	State struct {
		Entries     int `json:"entries"`
		Tokens      int `json:"tokens"`
		BundleRoots int `json:"bundle_roots"`
		CARoots     int `json:"ca_roots"`
		// SoftKeyRoots are the roots whose key is a DEV-ONLY soft: file:
		// not in the backup unless DevKeys holds it.
		SoftKeyRoots []string `json:"soft_key_roots,omitempty"`
	} `json:"state"`
	Payload struct {
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	} `json:"payload"`
	DevKeys *SealedKeys `json:"dev_keys,omitempty"`
}

// Fill copies the journal position and state counts of a parsed snapshot.
func (m *Manifest) Fill(info ha.SnapshotInfo) {
	m.Journal.Seq, m.Journal.Head = info.Seq, hex.EncodeToString(info.Head)
	m.Journal.ExportedSeq, m.Journal.Unexported, m.Journal.LastCommit = info.ExportedSeq, info.TailLen, info.LastCommit
	m.State.Entries, m.State.Tokens = len(info.EntryIDs), info.Tokens
	m.State.BundleRoots, m.State.CARoots = len(info.Bundle.Roots), len(info.CARoots)
	m.State.SoftKeyRoots = SoftKeyRoots(info.CARoots)
	if info.Lineage != nil {
		m.Journal.Lineage = info.Lineage.String()
	}
}

// DevKeyPath returns the data-dir-relative path of a soft: key URI such as
// soft:ca/root.key, and false for any other key (HSM, KMS, or a soft key
// outside the data dir): only such files may go into a backup.
func DevKeyPath(uri string) (string, bool) {
	p, ok := strings.CutPrefix(uri, "soft:")
	if !ok {
		return "", false
	}
	p = strings.TrimPrefix(p, "//")
	if p == "" || filepath.IsAbs(p) || !filepath.IsLocal(p) {
		return "", false
	}
	return filepath.Clean(p), true
}

// SoftKeyRoots returns the IDs of the roots whose key is a soft: file.
func SoftKeyRoots(roots []ha.CARoot) []string {
	var ids []string
	for _, r := range roots {
		if strings.HasPrefix(r.KeyURI, "soft:") {
			ids = append(ids, r.ID)
		}
	}
	return ids
}
