package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/tier0-ca/tier0/ca/record"
)

// Problems reported by Verify.
const (
	// ProblemModified: the row's hash does not match its contents while its
	// prev_hash links correctly (a field, the cert or prev_hash was edited).
	ProblemModified = "modified"
	// ProblemMissing: a seq is absent (row deleted), or rows were
	// renumbered down after a deletion (the row hashes correctly only with
	// seq+1).
	ProblemMissing = "missing"
	// ProblemInserted: an extra row sits in the chain: a row links (by
	// prev_hash) to a record earlier than its predecessor, so the rows in
	// between are extra; or two adjacent rows claim the same predecessor.
	// FirstBad is the first extra row.
	ProblemInserted = "inserted"
	// ProblemReordered: a row's prev_hash is the hash of a row stored
	// later in seq order (rows swapped).
	ProblemReordered = "reordered"
	// ProblemBrokenLink: a row is internally consistent (its hash matches
	// its contents and stored prev_hash) but prev_hash matches no stored
	// record: typically the previous row was edited and re-hashed.
	ProblemBrokenLink = "broken link"
)

// VerifyResult is the outcome of Verify.
type VerifyResult struct {
	Checked  uint64 // records verified in order before the first problem (all of them when intact)
	Head     []byte // hash of the last verified record (the chain head when intact)
	FirstBad uint64 // seq of the first problem; 0 when intact
	Problem  string // "" when intact, else one of the Problem* constants
}

// OK reports whether no problem was found.
func (r VerifyResult) OK() bool { return r.Problem == "" }

// window bounds how many recent hashes Verify remembers to recognise an
// inserted row (a link to an earlier record). Memory is ~100 B per entry.
const window = 1 << 16

// Verify recomputes the hash chain over records from..to (to == 0: up to
// the last) read from s with Range, starting from the stored prev_hash of
// `from` (record.Genesis when from <= 1), and reports the first problem.
//
// Rows are read in seq order; each is checked against the expected seq and
// the hash of the previous verified row:
//   - seq skips ahead                                    -> "missing" at the first absent seq
//   - to != 0 and the rows end before to                 -> "missing" after the last row
//   - prev_hash links, hash wrong; the next row claims
//     the same prev_hash                                 -> "inserted" at this row
//   - prev_hash links, hash wrong                        -> "modified"
//   - prev_hash is the hash of an earlier row q
//     (within the last 65536 rows)                       -> "inserted" at q+1
//   - prev_hash is the hash of a later row               -> "reordered" at this row
//   - otherwise, if the row hashes correctly             -> "broken link"
//   - otherwise, if it hashes correctly with seq+1       -> "missing" (deleted and renumbered)
//   - otherwise                                          -> "modified"
//
// Telling "reordered" from the last three reads on to the end of the range
// once, after the first problem. The chain cannot detect rows appended or
// removed at the end, or a whole suffix rewritten consistently; signed
// checkpoints cover those. Verify returns an error only when reading fails.
func Verify(ctx context.Context, s Ranger, from, to uint64) (VerifyResult, error) {
	if from <= 1 {
		return verifyFrom(ctx, s, 1, to, record.Genesis)
	}
	return verifyFrom(ctx, s, from, to, nil)
}

// verifyFrom is Verify with the hash record `from` must link to (nil:
// its stored prev_hash is trusted).
func verifyFrom(ctx context.Context, s Ranger, from, to uint64, prev []byte) (VerifyResult, error) {
	if from == 0 {
		from = 1
	}
	if to != 0 && to < from {
		return VerifyResult{}, fmt.Errorf("storage: verify: range %d..%d: %w", from, to, ErrBadFilter)
	}
	v := &verifier{to: to, expSeq: from, seen: make(map[[record.HashSize]byte]uint64)}
	if prev != nil {
		v.expPrev = prev
		v.res.Head = append([]byte(nil), prev...)
	}
	err := s.Range(ctx, from, to, v.feed)
	if err != nil && !errors.Is(err, errStop) {
		return VerifyResult{}, fmt.Errorf("storage: verify: %w", err)
	}
	v.end()
	return v.res, nil
}

var errStop = errors.New("storage: verify: stop")

type verifier struct {
	to      uint64
	expSeq  uint64
	expPrev []byte // nil until the first row when from > 1
	pending *record.Record
	res     VerifyResult
	done    bool

	// recent verified hashes -> seq, bounded by window
	seen map[[record.HashSize]byte]uint64
	ring [][record.HashSize]byte

	// after an unexplained broken link: look for a later row with this hash
	searching bool
	search    []byte
	badSeq    uint64
	fallback  string
}

func (v *verifier) feed(r *record.Record) error {
	if v.done {
		return errStop
	}
	if v.searching {
		if bytes.Equal(r.Hash, v.search) {
			v.fail(v.badSeq, ProblemReordered)
			return errStop
		}
		return nil
	}
	if v.pending != nil {
		v.check(v.pending, r)
		if v.done {
			return errStop
		}
		if v.searching {
			return v.feed(r)
		}
	}
	v.pending = r
	return nil
}

func (v *verifier) end() {
	if v.done {
		return
	}
	if !v.searching && v.pending != nil {
		v.check(v.pending, nil)
	}
	if v.searching {
		v.fail(v.badSeq, v.fallback)
		return
	}
	if !v.done && v.to != 0 && v.expSeq <= v.to {
		v.fail(v.expSeq, ProblemMissing)
	}
}

func (v *verifier) fail(seq uint64, problem string) {
	v.res.FirstBad, v.res.Problem, v.done, v.searching = seq, problem, true, false
}

// check verifies r, the row after the last verified one; next is the row
// after r (nil at the end).
func (v *verifier) check(r, next *record.Record) {
	if v.expPrev == nil {
		v.expPrev = r.PrevHash
	}
	if r.Seq != v.expSeq {
		if r.Seq > v.expSeq {
			v.fail(v.expSeq, ProblemMissing)
		} else {
			v.fail(r.Seq, ProblemInserted) // a duplicate seq: impossible with the primary key
		}
		return
	}
	link := bytes.Equal(r.PrevHash, v.expPrev)
	self := bytes.Equal(r.Hash, record.ChainHash(r.PrevHash, r))
	switch {
	case link && self:
		v.ok(r)
		return
	case link:
		if next != nil && next.Seq == r.Seq+1 && bytes.Equal(next.PrevHash, r.PrevHash) {
			v.fail(r.Seq, ProblemInserted)
		} else {
			v.fail(r.Seq, ProblemModified)
		}
		return
	}
	if q, ok := v.lookup(r.PrevHash); ok && q+1 < r.Seq {
		v.fail(q+1, ProblemInserted)
		return
	}
	v.fallback = ProblemModified
	if self {
		v.fallback = ProblemBrokenLink
	} else {
		shifted := *r
		shifted.Seq++
		if bytes.Equal(r.Hash, record.ChainHash(r.PrevHash, &shifted)) {
			v.fallback = ProblemMissing
		}
	}
	v.searching, v.search, v.badSeq = true, r.PrevHash, r.Seq
}

func (v *verifier) ok(r *record.Record) {
	v.res.Checked++
	v.res.Head = r.Hash
	v.expPrev = r.Hash
	v.expSeq++
	var k [record.HashSize]byte
	copy(k[:], r.Hash)
	if len(v.ring) < window {
		v.ring = append(v.ring, k)
	} else {
		i := (v.res.Checked - 1) % window
		delete(v.seen, v.ring[i])
		v.ring[i] = k
	}
	v.seen[k] = r.Seq
}

func (v *verifier) lookup(h []byte) (uint64, bool) {
	if len(h) != record.HashSize {
		return 0, false
	}
	var k [record.HashSize]byte
	copy(k[:], h)
	q, ok := v.seen[k]
	return q, ok
}
