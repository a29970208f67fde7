package core

import "time"

// TreeCheckpoint is a signed Merkle tree checkpoint (migration 0007): a
// C2SP tlog-checkpoint signed note over records 1..Size (internal/tlog)
// and the certificate of the audit key that signed it.
type TreeCheckpoint struct {
	Size     int64     `json:"size"`
	Note     []byte    `json:"note"`     // the signed note (base64 in JSON)
	CertDER  []byte    `json:"cert_der"` // the audit key certificate
	SignedAt time.Time `json:"signed_at"`
}
