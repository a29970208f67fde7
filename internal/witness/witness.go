// Package witness is a transparency-log witness for tier0's Merkle tree
// checkpoints (internal/tlog): it keeps the last checkpoint it cosigned,
// accepts a newer one only with a valid consistency proof from it, refuses
// a different tree of the same size (a split view: the log showed two
// parties different histories) or a smaller one (a rollback), and adds a
// C2SP tlog-cosignature/v1 (Ed25519, timestamped) to the checkpoint note.
package witness

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/tier0-ca/tier0/internal/tlog"
	"github.com/tier0-ca/tier0/storage"
)

// ErrSplitView: the log showed a tree that is not an extension of the one
// the witness cosigned (same size, other root; smaller; or no valid
// consistency proof).
var ErrSplitView = errors.New("witness: the log is not consistent with what it showed before")

// cosignatureType is the C2SP signed-note key type of tlog-cosignature/v1.
const cosignatureType = 0x04

// KeyHash returns the cosignature key ID: SHA-256(name || "\n" || 0x04 || pub)[:4].
func KeyHash(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write([]byte{cosignatureType})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

func cosignedMessage(body string, t time.Time) []byte {
	return []byte("cosignature/v1\ntime " + strconv.FormatInt(t.Unix(), 10) + "\n" + body)
}

// Cosign returns the signature line ("— name base64(keyID ‖ timestamp ‖ sig)\n")
// of a tlog-cosignature/v1 over the checkpoint body at t.
func Cosign(name string, key ed25519.PrivateKey, body string, t time.Time) string {
	sig := ed25519.Sign(key, cosignedMessage(body, t))
	b := make([]byte, 0, 4+8+len(sig))
	b = binary.BigEndian.AppendUint32(b, KeyHash(name, key.Public().(ed25519.PublicKey)))
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix()))
	b = append(b, sig...)
	return "— " + name + " " + base64.StdEncoding.EncodeToString(b) + "\n"
}

// Cosigned reports whether the signed note msg carries a valid cosignature
// of witness name with key pub, and its time.
func Cosigned(msg []byte, name string, pub ed25519.PublicKey) (time.Time, bool) {
	body := tlog.NoteText(msg)
	_, sigs, _ := bytes.Cut(msg, []byte("\n\n"))
	want := KeyHash(name, pub)
	for _, line := range bytes.Split(sigs, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte("— "+name+" "))
		if !ok {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(string(rest))
		if err != nil || len(raw) != 4+8+ed25519.SignatureSize || binary.BigEndian.Uint32(raw) != want {
			continue
		}
		t := time.Unix(int64(binary.BigEndian.Uint64(raw[4:])), 0).UTC()
		if ed25519.Verify(pub, cosignedMessage(body, t), raw[12:]) {
			return t, true
		}
	}
	return time.Time{}, false
}

// State is what the witness remembers (DIR/state.json).
type State struct {
	Size int64     `json:"size"`
	Root tlog.Hash `json:"root"`
}

// Config configures a Witness.
type Config struct {
	Name     string             // the witness's key name
	Key      ed25519.PrivateKey // its cosigning key
	LogCert  []byte             // the log's audit key certificate (DER): only checkpoints signed by its key are accepted
	LogCerts [][]byte           // more audit key certificates of the log (nodes with keys of their own); keys compared (SameLogKey)
	Roots    []*x509.Certificate
	StateDir string
	Clock    func() time.Time
}

// Witness cosigns checkpoints of one log.
type Witness struct{ cfg Config }

// New checks cfg.
func New(cfg Config) (*Witness, error) {
	if cfg.Name == "" || len(cfg.Key) != ed25519.PrivateKeySize || len(cfg.LogCert) == 0 || cfg.StateDir == "" {
		return nil, errors.New("witness: name, Ed25519 key, log key certificate and state directory are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Witness{cfg: cfg}, nil
}

// Source gives the log's newest tree checkpoint and consistency proofs
// (a tlog.Prover over the record store).
type Source interface {
	TreeCheckpoints(ctx context.Context) ([]storage.TreeCheckpoint, error)
	Consistency(ctx context.Context, from, to int64) (*tlog.Proof, error)
}

// Step fetches the newest tree checkpoint, checks it against the last one
// cosigned (consistency), cosigns it and returns the cosigned note; the
// state advances only when everything verified. A split view or rollback
// wraps ErrSplitView.
func (w *Witness) Step(ctx context.Context, src Source) ([]byte, error) {
	tcs, err := src.TreeCheckpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	if len(tcs) == 0 {
		return nil, errors.New("witness: the log has no tree checkpoint yet")
	}
	tc := tcs[len(tcs)-1]
	if !SameLogKey(tc.CertDER, append([][]byte{w.cfg.LogCert}, w.cfg.LogCerts...)...) {
		return nil, errors.New("witness: the newest checkpoint is signed by another key than --log-key")
	}
	c, err := tlog.Open(tc.Note, tc.CertDER, w.cfg.Roots)
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	st, err := w.load()
	if err != nil {
		return nil, err
	}
	switch {
	case st == nil:
	case c.Size < st.Size:
		return nil, fmt.Errorf("%w: the log shows size %d after size %d was cosigned (rolled back)", ErrSplitView, c.Size, st.Size)
	case c.Size == st.Size && c.Root != st.Root:
		return nil, fmt.Errorf("%w: two different trees of size %d (roots %s and %s): a split view", ErrSplitView, c.Size, st.Root, c.Root)
	case c.Size > st.Size:
		p, err := src.Consistency(ctx, st.Size, c.Size)
		if err != nil {
			return nil, fmt.Errorf("%w: no consistency proof from cosigned size %d to %d: %w", ErrSplitView, st.Size, c.Size, err)
		}
		if err := tlog.CheckConsistency(p.Hashes, c.Size, c.Root, st.Size, st.Root); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSplitView, err)
		}
	}
	line := Cosign(w.cfg.Name, w.cfg.Key, tlog.NoteText(tc.Note), w.cfg.Clock())
	out := append(bytes.TrimRight(bytes.Clone(tc.Note), "\n"), '\n')
	out = append(out, line...)
	if err := w.save(State{Size: c.Size, Root: c.Root}, out); err != nil {
		return nil, err
	}
	return out, nil
}

func (w *Witness) load() (*State, error) {
	raw, err := os.ReadFile(filepath.Join(w.cfg.StateDir, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("witness: state: %w", err)
	}
	var st State
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("witness: state: %w", err)
	}
	return &st, nil
}

func (w *Witness) save(st State, cosigned []byte) error {
	if err := os.MkdirAll(w.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("witness: state: %w", err)
	}
	raw, _ := json.Marshal(st)
	for name, data := range map[string][]byte{"cosigned.note": cosigned, "state.json": raw} {
		tmp := filepath.Join(w.cfg.StateDir, name+".tmp")
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return fmt.Errorf("witness: state: %w", err)
		}
		if err := os.Rename(tmp, filepath.Join(w.cfg.StateDir, name)); err != nil {
			return fmt.Errorf("witness: state: %w", err)
		}
	}
	return nil
}

// StoreSource is a Source over a record store (its tree checkpoints, and
// consistency proofs built from its records).
type StoreSource struct{ tlog.Prover }

// TreeCheckpoints implements Source.
func (s StoreSource) TreeCheckpoints(ctx context.Context) ([]storage.TreeCheckpoint, error) {
	return s.Store.TreeCheckpoints(ctx)
}
