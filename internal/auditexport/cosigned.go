package auditexport

import (
	"crypto/ed25519"
	"fmt"

	"github.com/tier0-ca/tier0/internal/tlog"
	"github.com/tier0-ca/tier0/internal/witness"
)

// Cosigned checks witness cosignatures (cosigned notes written by `tier0
// witness`) of the export's tree checkpoints: each note's checkpoint text
// must be one of the export's signed tree checkpoints (so the export's
// verification covers it); it returns the largest tree size cosigned by
// at least min of witnesses (name -> public key), or an error saying how
// many cosigned what.
func (e *Export) Cosigned(notes [][]byte, witnesses map[string]ed25519.PublicKey, min int) (int64, error) {
	bodies := map[string]int64{}
	for _, tc := range e.trees {
		bodies[tlog.NoteText(tc.Note)] = tc.Size
	}
	by := map[int64]map[string]bool{} // size -> witnesses that cosigned it
	for i, n := range notes {
		size, ok := bodies[tlog.NoteText(n)]
		if !ok {
			return 0, fmt.Errorf("cosigned note %d is of a checkpoint the export does not hold (another tree: a split view, or another log)", i+1)
		}
		for name, pub := range witnesses {
			if _, ok := witness.Cosigned(n, name, pub); ok {
				if by[size] == nil {
					by[size] = map[string]bool{}
				}
				by[size][name] = true
			}
		}
	}
	var best int64 = -1
	most := 0
	for size, ws := range by {
		most = max(most, len(ws))
		if len(ws) >= min && size > best {
			best = size
		}
	}
	if best < 0 {
		return 0, fmt.Errorf("no tree checkpoint is cosigned by %d of the %d witnesses given (at most %d)", min, len(witnesses), most)
	}
	return best, nil
}
