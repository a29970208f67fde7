package storage

import (
	"context"
	"fmt"
)

// TreeCosigner adds witness cosignatures to stored tree checkpoints (the
// api's AuditLog.AddCosignature). A cosigned checkpoint is the same C2SP
// signed note with more signature lines, so the note column holds the
// log's signature followed by the witnesses'. Both backends implement it.
type TreeCosigner interface {
	// SwapTreeNote replaces the note of the tree checkpoint of size with
	// updated if it still is old (compare and swap), and reports whether
	// it did. updated must extend old (signature lines are only ever
	// appended): anything else is refused.
	SwapTreeNote(ctx context.Context, size int64, old, updated []byte) (bool, error)
}

// SwapTreeNote implements TreeCosigner once connected.
func (l *Lazy) SwapTreeNote(ctx context.Context, size int64, old, updated []byte) (bool, error) {
	s, err := l.store()
	if err != nil {
		return false, err
	}
	t, ok := s.(TreeCosigner)
	if !ok {
		return false, fmt.Errorf("storage: %T keeps no tree checkpoints", s)
	}
	return t.SwapTreeNote(ctx, size, old, updated)
}
