package backupfile

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/tier0-ca/tier0/ha"
)

// Header describes a snapshot as the server streams it (the Backup
// service's header message).
type Header struct {
	TrustDomain, NodeID string
	CreatedAt           time.Time
	RaftIndex, RaftTerm uint64
	RaftMeta            json.RawMessage // raft.SnapshotMeta
	Size                int64           // payload bytes that follow
}

// Create writes the backup file out (atomically, 0600) from a snapshot
// stream: it spools the payload next to out, checks its size, parses it
// (the journal tail must chain), fills the manifest and, when devKeys is
// not nil, seals them under passphrase.
func Create(out string, h Header, payload io.Reader, devKeys map[string][]byte, passphrase []byte) (*Manifest, error) {
	tmp, err := os.CreateTemp(filepath.Dir(out), ".tmp-payload-")
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	sum := sha256.New()
	got, err := io.Copy(io.MultiWriter(tmp, sum), payload)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if got != h.Size {
		return nil, fmt.Errorf("backup: received %d of %d bytes", got, h.Size)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	info, err := ha.InspectSnapshot(tmp)
	if err != nil {
		return nil, fmt.Errorf("backup: the snapshot received does not verify: %w", err)
	}
	m := &Manifest{Format: Format, Version: Version, TrustDomain: h.TrustDomain, NodeID: h.NodeID, CreatedAt: h.CreatedAt.UTC()}
	m.Raft.Index, m.Raft.Term, m.Raft.Meta = h.RaftIndex, h.RaftTerm, h.RaftMeta
	m.Payload.Size, m.Payload.SHA256 = got, hex.EncodeToString(sum.Sum(nil))
	m.Fill(info)
	if devKeys != nil {
		if m.DevKeys, err = SealKeys(devKeys, passphrase, m.TrustDomain); err != nil {
			return nil, fmt.Errorf("backup: encrypt dev key: %w", err)
		}
	}
	if err := Write(out, m, tmp); err != nil {
		return nil, err
	}
	return m, nil
}

// Write writes the container to out (atomically, 0600) from a payload
// whose manifest is already filled in.
func Write(out string, m *Manifest, payload io.ReadSeeker) error {
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
	_, _ = bw.WriteString(Magic)
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

// File is an opened, checksum-verified backup.
type File struct {
	f        *os.File
	Manifest Manifest
	off      int64 // payload offset
}

// Close closes the file.
func (b *File) Close() error { return b.f.Close() }

// Payload returns a reader over the snapshot payload.
func (b *File) Payload() *io.SectionReader {
	return io.NewSectionReader(b.f, b.off, b.Manifest.Payload.Size)
}

// Open checks the magic, the trailing checksum, the manifest and the
// payload's SHA-256. It does not parse the payload (Verify does).
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("backup: %w", err)
	}
	b := &File{f: f}
	if b.off, err = parse(f, st.Size(), path, &b.Manifest); err != nil {
		f.Close()
		return nil, err
	}
	return b, nil
}

// parse checks the container in r (size bytes) and fills m; it returns the
// payload's offset.
func parse(r io.ReaderAt, size int64, path string, m *Manifest) (int64, error) {
	head := make([]byte, len(Magic)+4)
	if _, err := r.ReadAt(head, 0); err != nil || string(head[:len(Magic)]) != Magic {
		return 0, fmt.Errorf("backup: %s: %w: no tier0 backup header", path, ErrBadBackup)
	}
	if size < int64(len(head))+sha256.Size {
		return 0, fmt.Errorf("backup: %s: %w: truncated (%d bytes)", path, ErrBadBackup, size)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, size-sha256.Size)); err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	sum := make([]byte, sha256.Size)
	if _, err := r.ReadAt(sum, size-sha256.Size); err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	if !bytes.Equal(sum, h.Sum(nil)) {
		return 0, fmt.Errorf("backup: %s: %w: checksum mismatch (the file is truncated or corrupted)", path, ErrBadBackup)
	}
	mlen := int64(binary.BigEndian.Uint32(head[len(Magic):]))
	if mlen > maxManifest || int64(len(head))+mlen+sha256.Size > size {
		return 0, fmt.Errorf("backup: %s: %w: manifest length %d", path, ErrBadBackup, mlen)
	}
	mj := make([]byte, mlen)
	if _, err := r.ReadAt(mj, int64(len(head))); err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	if err := json.Unmarshal(mj, m); err != nil {
		return 0, fmt.Errorf("backup: %s: %w: manifest: %w", path, ErrBadBackup, err)
	}
	if m.Format != Format || m.Version != Version {
		return 0, fmt.Errorf("backup: %s: %w: format %q version %d (this tier0 reads %s version %d)", path, ErrBadBackup, m.Format, m.Version, Format, Version)
	}
	off := int64(len(head)) + mlen
	if m.Payload.Size < 0 || off+m.Payload.Size+sha256.Size != size {
		return 0, fmt.Errorf("backup: %s: %w: payload size %d does not match the file size", path, ErrBadBackup, m.Payload.Size)
	}
	ph := sha256.New()
	if _, err := io.Copy(ph, io.NewSectionReader(r, off, m.Payload.Size)); err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	if hex.EncodeToString(ph.Sum(nil)) != m.Payload.SHA256 {
		return 0, fmt.Errorf("backup: %s: %w: payload SHA-256 does not match the manifest", path, ErrBadBackup)
	}
	return off, nil
}

// Verify opens path and also parses the snapshot: its journal tail must
// chain to the head named in the manifest.
func Verify(path string) (*File, ha.SnapshotInfo, error) {
	b, err := Open(path)
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
