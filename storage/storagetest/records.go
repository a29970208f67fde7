// Package storagetest is the conformance suite every storage.Store
// implementation runs (Run), the tamper matrix for chain verification
// (RunTamper), and deterministic record chains for tests and benchmarks.
package storagetest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
)

// Base is the NotBefore of seq 0 in generated chains; seq n is n minutes later.
var Base = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// Test values the generated records cycle through.
var (
	SPIFFEIDs    = []string{"spiffe://example.org/workload/w0", "spiffe://example.org/workload/w1", "spiffe://example.org/workload/w2", "spiffe://example.org/workload/w3", "spiffe://example.org/workload/w4"}
	AgentIDs     = []string{"spiffe://example.org/tier0/agent/a0", "spiffe://example.org/tier0/agent/a1", "spiffe://example.org/tier0/agent/a2", ""}
	IssuerKeyIDs = []string{"a1b2c3d4e5f60718293a4b5c6d7e8f9001122334", "ffeeddccbbaa99887766554433221100ffeeddcc"}
)

// Gen returns the unsealed record seq of the chain named salt: every field
// set, times truncated, a 200-499 byte CertDER. Different salts give
// different serials and certificates at the same seq.
func Gen(salt string, seq uint64) *record.Record {
	h := sha256.Sum256(fmt.Appendf(nil, "%s/%d", salt, seq))
	serial := strings.TrimLeft(hex.EncodeToString(h[:16]), "0")
	if serial == "" {
		serial = "1"
	}
	pk := sha256.Sum256(h[:])
	nb := record.Truncate(Base.Add(time.Duration(seq)*time.Minute + time.Duration(seq%997)*time.Microsecond + 789*time.Nanosecond))
	der := make([]byte, 0, 200+seq%300)
	for blk := h; len(der) < cap(der); blk = sha256.Sum256(blk[:]) {
		der = append(der, blk[:min(len(blk), cap(der)-len(der))]...)
	}
	der[0], der[1] = 0x30, 0x00 // a NUL byte must survive too
	return &record.Record{
		Seq:             seq,
		Serial:          serial,
		SPIFFEID:        SPIFFEIDs[seq%uint64(len(SPIFFEIDs))],
		AgentID:         AgentIDs[seq%uint64(len(AgentIDs))],
		NotBefore:       nb,
		NotAfter:        nb.Add(30 * time.Minute),
		IssuerKeyID:     IssuerKeyIDs[seq%uint64(len(IssuerKeyIDs))],
		PublicKeySHA256: hex.EncodeToString(pk[:]),
		NodeID:          fmt.Sprintf("node-%d", seq%3),
		CommittedAt:     record.Truncate(nb.Add(2*time.Second + 123456789*time.Nanosecond)),
		CertDER:         der,
	}
}

// Chain returns n sealed records of chain salt, seqs from..from+n-1,
// linked from prev (record.Genesis for from == 1).
func Chain(salt string, from uint64, n int, prev []byte) []*record.Record {
	out := make([]*record.Record, n)
	for i := range out {
		r := Gen(salt, from+uint64(i))
		prev = r.Seal(prev)
		out[i] = r
	}
	return out
}
