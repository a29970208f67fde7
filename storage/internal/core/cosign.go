package core

import (
	"bytes"
	"fmt"
)

// CheckNoteSwap validates a tree note swap: the new note must extend the
// old one (cosignature lines are only ever appended).
func CheckNoteSwap(prefix string, size int64, old, updated []byte) error {
	if size <= 0 || len(old) == 0 || len(updated) <= len(old) || !bytes.HasPrefix(updated, old) {
		return fmt.Errorf("%s: swap tree note %d: the new note must extend the stored one", prefix, size)
	}
	return nil
}
