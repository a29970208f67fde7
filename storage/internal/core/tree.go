package core

import "time"

// TreeCheckpoint is a signed Merkle tree checkpoint (migration 0007): a
// C2SP tlog-checkpoint signed note over records 1..Size (internal/tlog)
// and the certificate of the audit key that signed it.
type TreeCheckpoint struct {
	Size     int64
	Note     []byte
	CertDER  []byte
	SignedAt time.Time
}
