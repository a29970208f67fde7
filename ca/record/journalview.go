package record

// JournalView is what a node's journal knows about the end of the hash
// chain: the last record it exported to the record store and the hashes of
// the records it has not exported yet. A verifier compares the store's end
// with it: a store record the journal does not hold at its seq (a forged
// tail appended to the store, correctly chained, after the newest
// checkpoint) is caught although no checkpoint covers it yet.
type JournalView struct {
	ExportedSeq  uint64   // the last record exported to the store (0: none)
	ExportedHash []byte   // hash of record ExportedSeq (nil when unknown or ExportedSeq is 0)
	Hashes       [][]byte // hashes of records ExportedSeq+1 .. Seq(), in order (not yet exported)
}

// Seq returns the journal head's seq.
func (v JournalView) Seq() uint64 { return v.ExportedSeq + uint64(len(v.Hashes)) }

// HashAt returns the journal's hash of record seq, when it holds it
// (ExportedSeq..Seq()).
func (v JournalView) HashAt(seq uint64) ([]byte, bool) {
	switch {
	case seq == 0 || seq < v.ExportedSeq || seq > v.Seq():
		return nil, false
	case seq == v.ExportedSeq:
		return v.ExportedHash, v.ExportedHash != nil
	}
	return v.Hashes[seq-v.ExportedSeq-1], true
}
