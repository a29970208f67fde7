package core

import (
	"fmt"
	"math"

	"github.com/tier0-ca/tier0/ca/record"
)

// CheckBatch validates a batch for Append: non-nil records with
// consecutive sequence numbers (journal order), a serial and 32-byte hashes.
// A batch that is not consecutive wraps ErrGap.
func CheckBatch(prefix string, recs []*record.Record) error {
	for i, r := range recs {
		if r == nil {
			return fmt.Errorf("%s: append: record %d is nil", prefix, i)
		}
		if r.Seq == 0 || r.Seq > math.MaxInt64 {
			return fmt.Errorf("%s: append: record %d: seq %d out of range", prefix, i, r.Seq)
		}
		if i > 0 && r.Seq != recs[i-1].Seq+1 {
			return fmt.Errorf("%s: append: batch not in journal order: seq %d follows %d: %w",
				prefix, r.Seq, recs[i-1].Seq, ErrGap)
		}
		if r.Serial == "" {
			return fmt.Errorf("%s: append: seq %d: empty serial", prefix, r.Seq)
		}
		if len(r.PrevHash) != record.HashSize || len(r.Hash) != record.HashSize {
			return fmt.Errorf("%s: append: seq %d: prev_hash and hash must be %d bytes (record not sealed?)",
				prefix, r.Seq, record.HashSize)
		}
	}
	return nil
}

// SplitBatch returns how many leading records of a checked batch are at or
// below last (already in the store, to be compared rather than inserted),
// or an error wrapping ErrGap when the first new record is not last+1.
func SplitBatch(prefix string, recs []*record.Record, last uint64) (int, error) {
	n := 0
	for n < len(recs) && recs[n].Seq <= last {
		n++
	}
	if n < len(recs) && recs[n].Seq != last+1 {
		return 0, fmt.Errorf("%s: append: first new seq is %d but the store ends at %d: %w",
			prefix, recs[n].Seq, last, ErrGap)
	}
	return n, nil
}
