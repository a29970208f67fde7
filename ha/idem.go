package ha

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
)

// Idempotency index (DESIGN.md "Idempotency keys"). A committed record may
// carry the hash of its request's idempotency key (wireRecord.Idem, set by
// the CA, ca/idem.go). Every node derives from the records entries an index
// key hash -> (seq, NotAfter), kept in snapshots, so a retry of a request
// whose certificate was committed (its client gave up, the leader changed)
// finds that certificate on any node: in the unexported tail, or in the
// record store by seq. Only 24 bytes per key are kept, never the DER, and
// an entry lives until its certificate expires (swept as records are
// appended, by the entry's own clock, so replay rebuilds the same index).
//
// The index is a hint: the CA checks that the record it names matches the
// request. A node that predates the field ignores it and keeps no index
// (its journal is the same); as leader it just mints retries anew.

// maxIdemEntries bounds the index (24 bytes of payload each, ~60 MB at the
// cap). Past it, after a sweep, new keys are not indexed (their retries
// are minted anew, as without a key).
const maxIdemEntries = 2 << 20

type idemRef struct {
	seq uint64
	naf int64 // NotAfter, unix seconds
}

type idemIndex struct {
	m          map[uint64]idemRef
	sinceSweep int
}

// add indexes the keyed records of a batch appended at now (the entry's
// clock); keys is nil or parallel to recs.
func (x *idemIndex) add(recs []*record.Record, keys []uint64, now time.Time) {
	if keys == nil {
		return
	}
	if x.m == nil {
		x.m = make(map[uint64]idemRef)
	}
	x.sinceSweep += len(recs)
	if x.sinceSweep >= max(1024, len(x.m)/4) || len(x.m)+len(recs) > maxIdemEntries {
		x.sweep(now)
	}
	for i, r := range recs {
		if keys[i] == 0 || len(x.m) >= maxIdemEntries {
			continue
		}
		x.m[keys[i]] = idemRef{seq: r.Seq, naf: r.NotAfter.Unix()}
	}
}

// sweep drops entries whose certificate expired at now.
func (x *idemIndex) sweep(now time.Time) {
	x.sinceSweep = 0
	t := now.Unix()
	for k, ref := range x.m {
		if ref.naf <= t {
			delete(x.m, k)
		}
	}
}

const idemPacked = 24 // key, seq, naf: 8 bytes each, big-endian

// pack encodes the index for a snapshot.
func (x *idemIndex) pack() []byte {
	if len(x.m) == 0 {
		return nil
	}
	b := make([]byte, 0, len(x.m)*idemPacked)
	for k, ref := range x.m {
		b = binary.BigEndian.AppendUint64(b, k)
		b = binary.BigEndian.AppendUint64(b, ref.seq)
		b = binary.BigEndian.AppendUint64(b, uint64(ref.naf))
	}
	return b
}

// unpackIdem decodes a snapshot's index.
func unpackIdem(b []byte, seq uint64) (idemIndex, error) {
	var x idemIndex
	if len(b) == 0 {
		return x, nil
	}
	if len(b)%idemPacked != 0 || len(b)/idemPacked > maxIdemEntries {
		return x, fmt.Errorf("ha: restore: idempotency index of %d bytes", len(b))
	}
	x.m = make(map[uint64]idemRef, len(b)/idemPacked)
	for ; len(b) > 0; b = b[idemPacked:] {
		ref := idemRef{seq: binary.BigEndian.Uint64(b[8:]), naf: int64(binary.BigEndian.Uint64(b[16:]))}
		if ref.seq == 0 || ref.seq > seq {
			return idemIndex{}, fmt.Errorf("ha: restore: idempotency index names seq %d beyond the journal (%d)", ref.seq, seq)
		}
		x.m[binary.BigEndian.Uint64(b)] = ref
	}
	return x, nil
}

// IdemEntries returns the number of keys in the idempotency index.
func (n *Node) IdemEntries() int {
	var c int
	n.fsm.read(func(s *state) { c = len(s.idem.m) })
	return c
}

// CommitKeyed is Commit with an idempotency key hash per record (0: none),
// recorded in the journal (implements ca.IdemJournal).
func (n *Node) CommitKeyed(ctx context.Context, recs []*record.Record, keys []uint64) error {
	if len(keys) != len(recs) {
		return fmt.Errorf("ha: commit: %d records but %d keys: %w", len(recs), len(keys), ErrInvalid)
	}
	return n.commit(ctx, recs, keys)
}

// Committed returns a copy of the committed record whose idempotency key
// hash is key, or nil when none is indexed (or it is exported and this
// node has no record store). It reads this node's state: a follower may
// not yet have applied a very recent commit.
func (n *Node) Committed(ctx context.Context, key uint64) (*record.Record, error) {
	if key == 0 {
		return nil, nil
	}
	var (
		rec      *record.Record
		seq      uint64
		exported bool
	)
	n.fsm.read(func(s *state) {
		ref, ok := s.idem.m[key]
		if !ok {
			return
		}
		seq = ref.seq
		if seq <= s.exportedSeq {
			exported = true
			return
		}
		if len(s.tail) > 0 {
			if i := seq - s.tail[0].Seq; i < uint64(len(s.tail)) {
				rec = cloneRecord(s.tail[i])
			}
		}
	})
	if !exported {
		return rec, nil
	}
	sink := n.idemSink.Load()
	if sink == nil {
		return nil, nil
	}
	err := (*sink).Range(ctx, seq, seq, func(r *record.Record) error {
		if r.Seq == seq {
			rec = r
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ha: idempotency lookup of seq %d: %w", seq, err)
	}
	return rec, nil
}
