package witness

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/tier0-ca/tier0/internal/tlog"
)

// MaxCosignatures bounds the witness cosignature lines a stored checkpoint
// takes (AddTo), so that a caller cannot grow a note without limit.
const MaxCosignatures = 32

// ErrCosignature is wrapped when a submitted cosignature is refused: it
// does not verify with the witness's key, it is over another checkpoint,
// or the checkpoint carries MaxCosignatures already.
var ErrCosignature = errors.New("witness: cosignature refused")

// sigLines returns the signature lines of a signed note (after the blank
// line), without their newlines.
func sigLines(msg []byte) []string {
	_, sigs, ok := bytes.Cut(msg, []byte("\n\n"))
	if !ok {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(sigs), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// Line returns the signature line ("— name base64...", no newline) of a
// valid cosignature of witness name with key pub in the signed note msg.
func Line(msg []byte, name string, pub ed25519.PublicKey) (string, bool) {
	text := tlog.NoteText(msg)
	for _, l := range sigLines(msg) {
		if !strings.HasPrefix(l, "— "+name+" ") {
			continue
		}
		if _, ok := Cosigned([]byte(text+"\n"+l+"\n"), name, pub); ok {
			return l, true
		}
	}
	return "", false
}

// AddTo returns the stored checkpoint note with the cosignature of witness
// name (key pub) from cosigned appended: cosigned must be a note of the
// same checkpoint text carrying a valid cosignature of that witness. When
// stored already carries one, it is returned unchanged and added is false.
// Refusals wrap ErrCosignature.
func AddTo(stored, cosigned []byte, name string, pub ed25519.PublicKey) (out []byte, added bool, err error) {
	if len(pub) != ed25519.PublicKeySize || name == "" || strings.ContainsAny(name, " \n+") {
		return nil, false, fmt.Errorf("%w: want a witness name (no spaces, newlines or '+') and a 32-byte Ed25519 key", ErrCosignature)
	}
	if tlog.NoteText(cosigned) != tlog.NoteText(stored) {
		return nil, false, fmt.Errorf("%w: the cosigned note is not of this checkpoint", ErrCosignature)
	}
	line, ok := Line(cosigned, name, pub)
	if !ok {
		return nil, false, fmt.Errorf("%w: no valid tlog-cosignature/v1 of %q with key %s in the note", ErrCosignature, name, hex.EncodeToString(pub))
	}
	if _, ok := Line(stored, name, pub); ok {
		return stored, false, nil
	}
	if n := len(sigLines(stored)); n > MaxCosignatures {
		return nil, false, fmt.Errorf("%w: the checkpoint carries %d cosignatures already (at most %d)", ErrCosignature, n-1, MaxCosignatures)
	}
	out = append(bytes.TrimRight(bytes.Clone(stored), "\n"), '\n')
	return append(out, line+"\n"...), true, nil
}

// CosignedBy returns the names of the witnesses (name -> key) whose valid
// cosignature the signed note msg carries.
func CosignedBy(msg []byte, witnesses map[string]ed25519.PublicKey) []string {
	var out []string
	for name, pub := range witnesses {
		if _, ok := Line(msg, name, pub); ok {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// ParseKeys parses witness keys given as NAME=HEX (the Ed25519 public key
// in hex, as `tier0 witness` prints it).
func ParseKeys(specs []string) (map[string]ed25519.PublicKey, error) {
	ws := map[string]ed25519.PublicKey{}
	for _, kv := range specs {
		name, k, ok := strings.Cut(kv, "=")
		pub, err := hex.DecodeString(k)
		if !ok || name == "" || err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("witness key %q: want NAME=<Ed25519 public key, 64 hex digits>", kv)
		}
		ws[name] = pub
	}
	return ws, nil
}
