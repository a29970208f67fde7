package storage_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

// TestLazy opens a SQLite store whose directory does not exist yet: every
// method answers ErrUnavailable until the directory appears, then the store
// works as usual.
func TestLazy(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "later")
	l, err := storage.OpenLazy(ctx, "sqlite:"+filepath.Join(dir, "r.db"),
		storage.LazyConfig{BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("OpenLazy: %v", err)
	}
	defer l.Close()
	if _, err := l.LastSeq(ctx); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("LastSeq before connecting = %v, want ErrUnavailable", err)
	}
	recs := storagetest.Chain("lazy", 1, 5, record.Genesis)
	if err := l.Append(ctx, recs); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Append before connecting = %v, want ErrUnavailable", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("not connected within 30s")
	}
	if err := l.Append(ctx, recs); err != nil {
		t.Fatalf("Append after connecting: %v", err)
	}
	if last, err := l.LastSeq(ctx); err != nil || last != 5 {
		t.Fatalf("LastSeq = %d, %v; want 5", last, err)
	}
}

func TestLazyErrors(t *testing.T) {
	if _, err := storage.OpenLazy(context.Background(), "mysql://x", storage.LazyConfig{}); err == nil {
		t.Fatal("OpenLazy with an unknown scheme succeeded")
	}
	// Closing while still connecting stops the retries.
	l, err := storage.OpenLazy(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "no", "r.db"), storage.LazyConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.LastSeq(context.Background()); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("LastSeq after Close = %v, want ErrUnavailable", err)
	}
}
