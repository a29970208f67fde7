package main

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tier0-ca/tier0/ha"
)

// Backup file (format version 1; docs/OPERATIONS.md "Backup file format"):
//
//	"TIER0BACKUP\n"            12 bytes magic
//	uint32 big-endian          length of the manifest
//	manifest                   JSON (backupManifest)
//	payload                    manifest.payload.size bytes: the raft snapshot (ha snapshot format)
//	SHA-256                    32 bytes over everything before it
//
// The trailing checksum catches truncation and corruption before anything
// is parsed; the manifest also carries the payload's own SHA-256.
const (
	backupMagic   = "TIER0BACKUP\n"
	backupFormat  = "tier0-backup"
	backupVersion = 1
	maxManifest   = 16 << 20

	// PBKDF2-HMAC-SHA256 for the dev key passphrase (stdlib; OWASP 2023
	// recommends >= 600,000 iterations for SHA-256).
	kdfName       = "pbkdf2-sha256"
	kdfIterations = 600_000
)

// ErrBadBackup marks a file that is not a complete, intact tier0 backup.
var ErrBadBackup = errors.New("not a valid tier0 backup")

type backupManifest struct {
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
	} `json:"journal"`
	State struct {
		Entries     int `json:"entries"`
		Tokens      int `json:"tokens"`
		BundleRoots int `json:"bundle_roots"`
		CARoots     int `json:"ca_roots"`
	} `json:"state"`
	Payload struct {
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	} `json:"payload"`
	DevKeys *sealedKeys `json:"dev_keys,omitempty"`
}

// sealedKeys is the DEV-ONLY soft key files, AES-256-GCM under a key
// derived from the passphrase; the plaintext is JSON {path: PEM}.
type sealedKeys struct {
	KDF        string `json:"kdf"`
	Iterations int    `json:"iterations"`
	Salt       []byte `json:"salt"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
}

func (m *backupManifest) fill(info ha.SnapshotInfo) {
	m.Journal.Seq, m.Journal.Head = info.Seq, hex.EncodeToString(info.Head)
	m.Journal.ExportedSeq, m.Journal.Unexported, m.Journal.LastCommit = info.ExportedSeq, info.TailLen, info.LastCommit
	m.State.Entries, m.State.Tokens = len(info.EntryIDs), info.Tokens
	m.State.BundleRoots, m.State.CARoots = len(info.Bundle.Roots), len(info.CARoots)
}

func sealAAD(td string) []byte { return []byte("tier0-backup-dev-keys-v1\x00" + td) }

func sealDevKeys(keys map[string][]byte, passphrase []byte, td string) (*sealedKeys, error) {
	plain, err := json.Marshal(keys)
	if err != nil {
		return nil, err
	}
	s := &sealedKeys{KDF: kdfName, Iterations: kdfIterations, Salt: make([]byte, 16)}
	if _, err := rand.Read(s.Salt); err != nil {
		return nil, err
	}
	aead, err := s.aead(passphrase)
	if err != nil {
		return nil, err
	}
	s.Nonce = make([]byte, aead.NonceSize())
	if _, err := rand.Read(s.Nonce); err != nil {
		return nil, err
	}
	s.Ciphertext = aead.Seal(nil, s.Nonce, plain, sealAAD(td))
	clear(plain)
	return s, nil
}

func (s *sealedKeys) open(passphrase []byte, td string) (map[string][]byte, error) {
	if s.KDF != kdfName || s.Iterations < 100_000 || len(s.Salt) < 16 {
		return nil, fmt.Errorf("backup: dev keys: unsupported kdf %q (%d iterations)", s.KDF, s.Iterations)
	}
	aead, err := s.aead(passphrase)
	if err != nil {
		return nil, err
	}
	if len(s.Nonce) != aead.NonceSize() {
		return nil, fmt.Errorf("backup: dev keys: bad nonce: %w", ErrBadBackup)
	}
	plain, err := aead.Open(nil, s.Nonce, s.Ciphertext, sealAAD(td))
	if err != nil {
		return nil, errors.New("backup: dev keys: wrong passphrase (or the key section was altered)")
	}
	var keys map[string][]byte
	if err := json.Unmarshal(plain, &keys); err != nil {
		return nil, fmt.Errorf("backup: dev keys: %w", err)
	}
	clear(plain)
	return keys, nil
}

func (s *sealedKeys) aead(passphrase []byte) (cipher.AEAD, error) {
	key, err := pbkdf2.Key(sha256.New, string(passphrase), s.Salt, s.Iterations, 32)
	if err != nil {
		return nil, fmt.Errorf("backup: kdf: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// readPassphrase reads a passphrase file (trailing newline removed).
func readPassphrase(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--passphrase-file: %w", err)
	}
	p := []byte(strings.TrimRight(string(raw), "\r\n"))
	if len(p) < 12 {
		return nil, errors.New("--passphrase-file: the passphrase must be at least 12 characters")
	}
	return p, nil
}

// writeBackupFile writes the container to out (atomically, 0600) from a
// payload file whose manifest is already filled in.
func writeBackupFile(out string, m *backupManifest, payload *os.File) error {
	mj, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("backup: manifest: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".tmp-backup-")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(tmp, h), 1<<20)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(mj)))
	// bufio.Writer errors are sticky: the Flush below reports any of these.
	_, _ = bw.WriteString(backupMagic)
	_, _ = bw.Write(n[:])
	_, _ = bw.Write(mj)
	if _, err := payload.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := io.Copy(bw, payload); err != nil {
		return fmt.Errorf("backup: copy payload: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("backup: write %s: %w", out, err)
	}
	if _, err := tmp.Write(h.Sum(nil)); err != nil {
		return fmt.Errorf("backup: write %s: %w", out, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("backup: sync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// backupFile is an opened, checksum-verified backup.
type backupFile struct {
	f        *os.File
	Manifest backupManifest
	off      int64 // payload offset
}

func (b *backupFile) Close() error { return b.f.Close() }

// Payload returns a reader over the snapshot payload.
func (b *backupFile) Payload() *io.SectionReader {
	return io.NewSectionReader(b.f, b.off, b.Manifest.Payload.Size)
}

// openBackupFile checks the magic, the trailing checksum, the manifest and
// the payload's SHA-256. It does not parse the payload (verifyBackup does).
func openBackupFile(path string) (*backupFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	b := &backupFile{f: f}
	if err := b.check(path); err != nil {
		f.Close()
		return nil, err
	}
	return b, nil
}

func (b *backupFile) check(path string) error {
	st, err := b.f.Stat()
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	size := st.Size()
	head := make([]byte, len(backupMagic)+4)
	if _, err := io.ReadFull(b.f, head); err != nil || string(head[:len(backupMagic)]) != backupMagic {
		return fmt.Errorf("backup: %s: %w: no tier0 backup header", path, ErrBadBackup)
	}
	if size < int64(len(head))+sha256.Size {
		return fmt.Errorf("backup: %s: %w: truncated (%d bytes)", path, ErrBadBackup, size)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(b.f, 0, size-sha256.Size)); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	sum := make([]byte, sha256.Size)
	if _, err := b.f.ReadAt(sum, size-sha256.Size); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if !bytes.Equal(sum, h.Sum(nil)) {
		return fmt.Errorf("backup: %s: %w: checksum mismatch (the file is truncated or corrupted)", path, ErrBadBackup)
	}
	mlen := int64(binary.BigEndian.Uint32(head[len(backupMagic):]))
	if mlen > maxManifest || int64(len(head))+mlen+sha256.Size > size {
		return fmt.Errorf("backup: %s: %w: manifest length %d", path, ErrBadBackup, mlen)
	}
	mj := make([]byte, mlen)
	if _, err := b.f.ReadAt(mj, int64(len(head))); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	m := &b.Manifest
	if err := json.Unmarshal(mj, m); err != nil {
		return fmt.Errorf("backup: %s: %w: manifest: %w", path, ErrBadBackup, err)
	}
	if m.Format != backupFormat || m.Version != backupVersion {
		return fmt.Errorf("backup: %s: %w: format %q version %d (this tier0 reads %s version %d)", path, ErrBadBackup, m.Format, m.Version, backupFormat, backupVersion)
	}
	b.off = int64(len(head)) + mlen
	if b.off+m.Payload.Size+sha256.Size != size {
		return fmt.Errorf("backup: %s: %w: payload size %d does not match the file size", path, ErrBadBackup, m.Payload.Size)
	}
	ph := sha256.New()
	if _, err := io.Copy(ph, b.Payload()); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if hex.EncodeToString(ph.Sum(nil)) != m.Payload.SHA256 {
		return fmt.Errorf("backup: %s: %w: payload SHA-256 does not match the manifest", path, ErrBadBackup)
	}
	return nil
}

// verifyBackup opens path and also parses the snapshot: its journal tail
// must chain to the head named in the manifest.
func verifyBackup(path string) (*backupFile, ha.SnapshotInfo, error) {
	b, err := openBackupFile(path)
	if err != nil {
		return nil, ha.SnapshotInfo{}, err
	}
	info, err := ha.InspectSnapshot(b.Payload())
	if err != nil {
		b.Close()
		return nil, info, fmt.Errorf("backup: %s: %w: snapshot: %w", path, ErrBadBackup, err)
	}
	m := b.Manifest
	if info.Seq != m.Journal.Seq || hex.EncodeToString(info.Head) != m.Journal.Head || info.Bundle.TrustDomain != m.TrustDomain {
		b.Close()
		return nil, info, fmt.Errorf("backup: %s: %w: manifest (seq %d, trust domain %q) does not match the snapshot (seq %d, trust domain %q)",
			path, ErrBadBackup, m.Journal.Seq, m.TrustDomain, info.Seq, info.Bundle.TrustDomain)
	}
	return b, info, nil
}
