package record

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// EventVersion is the first byte of an admin event record's canonical
// encoding. It differs from Version, so an event record can never encode
// to the same bytes as a certificate record.
const EventVersion byte = 2

// Record kinds, as the store's kind column names them (migrations 0006 and
// 0008).
const (
	KindX509  = "x509"  // an X.509 certificate
	KindJWT   = "jwt"   // a JWT-SVID: IssuerKeyID "jwt:<kid>", Serial its jti
	KindAdmin = "admin" // an admin event: Action set
)

// MaxEventDetail bounds an event's Detail (a JSON object).
const MaxEventDetail = 64 << 10

// An admin event record is a Record with Action set, appended to the
// journal in the same raft entry as the state change it describes (ha), so
// the change and its record are in the log together or not at all. Its
// fields:
//
//	Seq, PrevHash, Hash   as for certificates (the same chain and tree)
//	Serial                the event ID: 128 random bits, lowercase hex (as a serial)
//	Action                what changed, e.g. "entry.create" (EventActions)
//	SPIFFEID              what the change is about (an entry's or agent's SPIFFE ID, a node's, the trust domain's)
//	AgentID               the actor: the caller's SPIFFE ID
//	NodeID                the node that served the call
//	CommittedAt           the leader-stamped commit time
//	Detail                the change's content, a JSON object, never a secret (a token appears by its hash)
//	NotBefore, NotAfter   equal to CommittedAt (set by the journal, not hashed; verify compares them)
//	IssuerKeyID, PublicKeySHA256, CertDER   empty
//
// Canonical (docs/AUDIT.md): byte EventVersion, then Seq (uint64
// big-endian), Serial, Action, SPIFFEID, AgentID, NodeID (each a uint32
// big-endian length and the UTF-8 bytes), CommittedAt (int64 unix
// microseconds), Detail (length-prefixed).

// IsEvent reports whether r is an admin event record.
func (r *Record) IsEvent() bool { return r.Action != "" }

// Kind returns r's kind: KindAdmin, KindJWT or KindX509.
func (r *Record) Kind() string {
	switch {
	case r.IsEvent():
		return KindAdmin
	case len(r.IssuerKeyID) >= 4 && r.IssuerKeyID[:4] == "jwt:":
		return KindJWT
	}
	return KindX509
}

func (r *Record) eventCanonical() []byte {
	var b bytes.Buffer
	b.Grow(128 + len(r.Detail))
	b.WriteByte(EventVersion)
	putU64(&b, r.Seq)
	putStr(&b, r.Serial)
	putStr(&b, r.Action)
	putStr(&b, r.SPIFFEID)
	putStr(&b, r.AgentID)
	putStr(&b, r.NodeID)
	putU64(&b, uint64(Truncate(r.CommittedAt).UnixMicro()))
	putBytes(&b, r.Detail)
	return b.Bytes()
}

// CheckEvent reports what is wrong with an event record's proposed fields
// (nil when r is a well-formed event): an ID, an action, an actor, a
// subject, Detail a JSON object of at most MaxEventDetail bytes, and no
// certificate fields.
func CheckEvent(r *Record) error {
	switch {
	case !r.IsEvent():
		return fmt.Errorf("record: event: no action")
	case r.Serial == "" || r.AgentID == "" || r.SPIFFEID == "":
		return fmt.Errorf("record: event %s: id, actor and subject are required", r.Action)
	case len(r.Action) > 64 || !utf8.ValidString(r.Action):
		return fmt.Errorf("record: event: action is not a short name")
	case r.IssuerKeyID != "" || r.PublicKeySHA256 != "" || len(r.CertDER) != 0:
		return fmt.Errorf("record: event %s: carries certificate fields", r.Action)
	case len(r.Detail) > MaxEventDetail:
		return fmt.Errorf("record: event %s: detail is %d bytes, at most %d", r.Action, len(r.Detail), MaxEventDetail)
	}
	var obj map[string]json.RawMessage
	if len(r.Detail) > 0 {
		if err := json.Unmarshal(r.Detail, &obj); err != nil {
			return fmt.Errorf("record: event %s: detail is not a JSON object: %w", r.Action, err)
		}
	}
	return nil
}
