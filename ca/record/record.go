// Package record defines the issuance record kept in the tier0 journal and
// record store, and the hash chain over it (invariant 7 in DESIGN.md).
//
// The canonical encoding is the contract between the journal (ha), the
// record stores (storage) and `tier0 audit verify`: any change to it is a
// format version bump. golden_test.go pins the bytes and hashes of fixed
// records (and the checkpoint message), so it cannot change by accident.
package record

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Version is the canonical-encoding version written as the first byte.
const Version byte = 1

// HashSize is the size of PrevHash and Hash.
const HashSize = sha256.Size

// Record is one issued certificate. Times are UTC and truncated to the
// microsecond (Postgres timestamptz precision) before they enter the journal.
type Record struct {
	Seq             uint64    // journal sequence number, assigned by the FSM, starts at 1
	Serial          string    // certificate serial as lowercase hex (big.Int.Text(16))
	SPIFFEID        string    // the SVID's URI SAN
	AgentID         string    // SPIFFE ID of the caller that requested it ("" for CA-internal issuance)
	NotBefore       time.Time // certificate NotBefore
	NotAfter        time.Time // certificate NotAfter
	IssuerKeyID     string    // lowercase hex of the issuer's SubjectKeyId
	PublicKeySHA256 string    // lowercase hex SHA-256 of the SVID's SubjectPublicKeyInfo DER
	NodeID          string    // node that signed it
	CommittedAt     time.Time // leader-stamped commit time (set by the journal, not the signer)
	CertDER         []byte    // the certificate
	// Action and Detail are set only in an admin event record (event.go):
	// Action names the state change, Detail is its content (a JSON
	// object). Empty in certificate records, whose encoding they do not
	// touch.
	Action   string `json:",omitempty"`
	Detail   []byte `json:",omitempty"`
	PrevHash []byte // Hash of record Seq-1 (32 zero bytes for Seq 1 / genesis)
	Hash     []byte // SHA-256(PrevHash || Canonical())
}

// Genesis is the PrevHash of the first record.
var Genesis = make([]byte, HashSize)

// Truncate normalises a time the way the journal stores it.
func Truncate(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// Canonical returns the deterministic encoding of every field except
// PrevHash and Hash. An admin event record (IsEvent) has its own encoding
// (eventCanonical, leading byte EventVersion).
func (r *Record) Canonical() []byte {
	if r.IsEvent() {
		return r.eventCanonical()
	}
	var b bytes.Buffer
	b.Grow(256 + len(r.CertDER))
	b.WriteByte(Version)
	putU64(&b, r.Seq)
	putStr(&b, r.Serial)
	putStr(&b, r.SPIFFEID)
	putStr(&b, r.AgentID)
	putU64(&b, uint64(Truncate(r.NotBefore).UnixMicro()))
	putU64(&b, uint64(Truncate(r.NotAfter).UnixMicro()))
	putStr(&b, r.IssuerKeyID)
	putStr(&b, r.PublicKeySHA256)
	putStr(&b, r.NodeID)
	putU64(&b, uint64(Truncate(r.CommittedAt).UnixMicro()))
	putBytes(&b, r.CertDER)
	return b.Bytes()
}

// ChainHash returns SHA-256(prev || canonical(r)).
func ChainHash(prev []byte, r *Record) []byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(r.Canonical())
	return h.Sum(nil)
}

// Seal sets r.PrevHash and r.Hash from prev and returns r.Hash.
func (r *Record) Seal(prev []byte) []byte {
	r.PrevHash = append([]byte(nil), prev...)
	r.Hash = ChainHash(prev, r)
	return r.Hash
}

// ErrChain is wrapped by Verify errors.
var ErrChain = errors.New("record: chain broken")

// Verify checks that r links to prev and that its hash is right.
func (r *Record) Verify(prev []byte) error {
	if !bytes.Equal(r.PrevHash, prev) {
		return fmt.Errorf("%w: seq %d: prev_hash does not match the hash of the previous record", ErrChain, r.Seq)
	}
	if !bytes.Equal(r.Hash, ChainHash(prev, r)) {
		return fmt.Errorf("%w: seq %d: hash does not match contents (record modified)", ErrChain, r.Seq)
	}
	return nil
}

func putU64(b *bytes.Buffer, v uint64) {
	var x [8]byte
	binary.BigEndian.PutUint64(x[:], v)
	b.Write(x[:])
}

func putStr(b *bytes.Buffer, s string) { putBytes(b, []byte(s)) }

func putBytes(b *bytes.Buffer, p []byte) {
	var x [4]byte
	binary.BigEndian.PutUint32(x[:], uint32(len(p)))
	b.Write(x[:])
	b.Write(p)
}
