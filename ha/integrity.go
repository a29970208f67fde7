package ha

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// Integrity digest (DESIGN.md "Integrity"). The leader ends every command
// it proposes with one more member of its JSON object,
//
//	type || {...,"sum":"<hex SHA-256 of type || {...}>"}
//
// the SHA-256 of the command as it was before the member was added. The
// FSM recomputes it before applying (on apply and on replay after a
// restart), so a byte altered anywhere in the entry, type byte included, is
// caught; a mismatch latches the node diverged (health.go). The digest is a
// member of the object rather than a new envelope type so that a node that
// predates it applies the command unchanged (encoding/json ignores the
// unknown member): a rolling upgrade needs no ordering. An entry without
// the member (written before this version) is applied unchecked.
const sumMember = `,"sum":"`

// sumLen is the length of the digest member plus the closing `"}`.
const sumLen = len(sumMember) + 2*sha256.Size + 2

// errCannotApply marks a handler error that means this node cannot apply
// the entry at all (it does not decode, or it does not match what the
// leader computed), as opposed to a deterministic refusal every node makes
// alike (ErrExists, ErrNotFound, a failed check): Apply latches the former.
var errCannotApply = errors.New("cannot apply")

// addDigest returns cmd (type byte and a JSON object with at least one
// member) with the digest member appended.
func addDigest(cmd []byte) ([]byte, error) {
	if len(cmd) < 4 || cmd[1] != '{' || cmd[len(cmd)-1] != '}' || bytes.Equal(cmd[1:], []byte("{}")) {
		return nil, fmt.Errorf("ha: digest: command is not a type and a non-empty JSON object: %w", ErrInvalid)
	}
	sum := sha256.Sum256(cmd)
	out := make([]byte, 0, len(cmd)-1+sumLen)
	out = append(out, cmd[:len(cmd)-1]...)
	return appendSum(out, sum[:]), nil
}

func appendSum(b, sum []byte) []byte {
	b = append(b, sumMember...)
	b = hex.AppendEncode(b, sum)
	return append(b, `"}`...)
}

// checkDigest verifies data's digest member, if it has one. It returns the
// command without the member (a copy only when it had one) and whether it
// had one. A member whose digest is not hex, or does not match, is an
// error: the entry was altered.
func checkDigest(data []byte) (cmd []byte, sealed bool, err error) {
	n := len(data)
	if n < 2+sumLen || string(data[n-2:]) != `"}` || string(data[n-sumLen:n-sumLen+len(sumMember)]) != sumMember {
		return data, false, nil
	}
	var want [sha256.Size]byte
	if _, err := hex.Decode(want[:], data[n-2*sha256.Size-2:n-2]); err != nil {
		return nil, true, fmt.Errorf("integrity: digest member is not hex: %w", errCannotApply)
	}
	body := data[:n-sumLen]
	h := sha256.New()
	h.Write(body)
	h.Write([]byte{'}'})
	if !bytes.Equal(h.Sum(nil), want[:]) {
		return nil, true, fmt.Errorf("integrity: SHA-256 of the entry does not match the digest the leader computed (altered on disk or in transit): %w", errCannotApply)
	}
	cmd = make([]byte, 0, len(body)+1)
	return append(append(cmd, body...), '}'), true, nil
}

// validator is a command payload with the stateless checks that both the
// FSM (on apply) and the leader (before proposing a forwarded or local
// command) run.
type validator interface{ validate() error }

// payloads returns a new payload value for each known command type except
// records (which reach raft only through the committer: Commit and
// ForwardCommit validate each record).
var payloads = map[byte]func() validator{
	cmdExported:             func() validator { return new(exportedCmd) },
	cmdCreateEntry:          func() validator { return new(createEntryCmd) },
	cmdCreateEntryFederated: func() validator { return new(createEntryCmd) },
	cmdDeleteEntry:          func() validator { return new(deleteEntryCmd) },
	cmdCreateToken:          func() validator { return new(createTokenCmd) },
	cmdConsumeToken:         func() validator { return new(consumeTokenCmd) },
	cmdSetBundle:            func() validator { return new(setBundleCmd) },
	cmdCARoots:              func() validator { return new(caRootsCmd) },
	cmdCAKeyReport:          func() validator { return new(caKeyReportCmd) }, // castate_gate.go
	cmdCATaint:              func() validator { return new(caTaintCmd) },     // castate_taint.go
	cmdTrust:                func() validator { return new(trustCmd) },
	cmdCheckpoint:           func() validator { return new(checkpointCmd) },
	cmdLineage:              func() validator { return new(lineageCmd) },
	cmdRecordAttestation:    func() validator { return new(recordAttestationCmd) }, // attest.go
	cmdCreateNodeEntry:      func() validator { return new(createNodeEntryCmd) },   // attest.go
}

// checkCommand is what the leader (and a follower, before forwarding)
// requires of a command before it reaches the raft log: a digest, if
// present, that matches; a known type other than records; a payload that
// decodes into that type's struct and passes its checks. It returns the
// command without a digest (the leader adds its own when proposing).
// Every failure wraps ErrInvalid: such a command never reaches the log.
func checkCommand(data []byte) ([]byte, error) {
	cmd, _, err := checkDigest(data)
	if err != nil {
		return nil, fmt.Errorf("ha: command: %v: %w", err, ErrInvalid) //nolint:errorlint // the reason, not errCannotApply, is the point here
	}
	if len(cmd) == 0 {
		return nil, fmt.Errorf("ha: command: empty: %w", ErrInvalid)
	}
	typ := cmd[0]
	if typ == cmdRecords {
		return nil, fmt.Errorf("ha: command: records go through commit: %w", ErrInvalid)
	}
	mk, ok := payloads[typ]
	if !ok {
		return nil, fmt.Errorf("ha: command: unknown command type 0x%02x: %w", typ, ErrInvalid)
	}
	v := mk()
	if err := json.Unmarshal(cmd[1:], v); err != nil {
		return nil, fmt.Errorf("ha: command 0x%02x: %w: %w", typ, ErrInvalid, err)
	}
	if err := v.validate(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// decodeValid decodes payload into a new T and runs its checks. A payload
// that does not decode is errCannotApply (the leader never proposes one);
// a failed check is a refusal (ErrInvalid).
func decodeValid[T any, PT interface {
	*T
	validator
}](name string, payload []byte) (PT, error) {
	v := PT(new(T))
	if err := decode(name, payload, v); err != nil {
		return nil, err
	}
	if err := v.validate(); err != nil {
		return nil, err
	}
	return v, nil
}
