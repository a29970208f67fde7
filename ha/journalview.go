package ha

import (
	"bytes"

	"github.com/tier0-ca/tier0/ca/record"
)

// JournalView returns what this node's journal knows about the end of the
// chain (record.JournalView): the last exported record's seq and hash and
// the hashes of the unexported ones. A follower's view lags the leader's
// by the entries it has not applied yet.
func (n *Node) JournalView() record.JournalView {
	var v record.JournalView
	n.fsm.read(func(s *state) {
		v.ExportedSeq = s.exportedSeq
		if h, ok := s.chainHashAt(s.exportedSeq); ok && s.exportedSeq > 0 {
			v.ExportedHash = bytes.Clone(h)
		}
		v.Hashes = make([][]byte, len(s.tail))
		for i, r := range s.tail {
			v.Hashes[i] = bytes.Clone(r.Hash)
		}
	})
	return v
}
