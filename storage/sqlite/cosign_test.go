package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/tier0-ca/tier0/storage/storagetest"
)

func TestTreeNotes(t *testing.T) {
	storagetest.RunTreeNotes(t, open(t, filepath.Join(t.TempDir(), "records.db")))
}
