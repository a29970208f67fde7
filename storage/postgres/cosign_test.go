package postgres_test

import (
	"testing"

	"github.com/tier0-ca/tier0/storage/storagetest"
)

func TestTreeNotes(t *testing.T) {
	s, _, _ := open(t)
	storagetest.RunTreeNotes(t, s)
}
