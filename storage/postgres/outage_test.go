package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/internal/testenv"
	"github.com/tier0-ca/tier0/storage"
	"github.com/tier0-ca/tier0/storage/postgres"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

// TestUnavailableWhileServerStopped stops a private Postgres under an open
// store: every method fails with storage.ErrUnavailable (wrapping the
// connection error), a bad filter is still ErrBadFilter, opening a new
// store is Unavailable too, and the same store works again once Postgres
// is back.
func TestUnavailableWhileServerStopped(t *testing.T) {
	pg := testenv.StartPrivatePostgres(t)
	ctx := context.Background()
	cfg := postgres.Config{DSN: pg.DSN("postgres"), ConnectTimeout: 5 * time.Second}
	s, err := postgres.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs := storagetest.Chain("outage", 1, 4, record.Genesis)
	if err := s.Append(ctx, recs[:3]); err != nil {
		t.Fatal(err)
	}

	pg.Stop()
	calls := map[string]func() error{
		"LastSeq":  func() error { _, err := s.LastSeq(ctx); return err },
		"FirstSeq": func() error { _, err := s.FirstSeq(ctx); return err },
		"Query":    func() error { _, err := s.Query(ctx, storage.Filter{}); return err },
		"Range": func() error {
			return s.Range(ctx, 1, 0, func(*record.Record) error { return nil })
		},
		"Checkpoints":    func() error { _, err := s.Checkpoints(ctx, 1, 0); return err },
		"QueryDecisions": func() error { _, err := s.QueryDecisions(ctx, storage.DecisionFilter{}); return err },
		"SchemaVersion":  func() error { _, _, err := s.SchemaVersion(ctx); return err },
		"Append":         func() error { return s.Append(ctx, recs[3:]) },
		"AppendDecisions": func() error {
			return s.AppendDecisions(ctx, []storage.Decision{{At: time.Now().UTC().Truncate(time.Microsecond), NodeID: "n1",
				Caller: "spiffe://example.org/a", Requested: "spiffe://example.org/b", Reason: "x"}})
		},
		"VerifyAudit": func() error { _, err := storage.VerifyAudit(ctx, s, 0, 0, nil); return err },
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "storage: record store unavailable: postgres: ") {
			t.Errorf("%s while Postgres is stopped: %v, want storage.ErrUnavailable", name, err)
		}
	}
	if _, err := s.Query(ctx, storage.Filter{Limit: -1}); !errors.Is(err, storage.ErrBadFilter) || errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("bad filter during the outage: %v, want ErrBadFilter only", err)
	}
	if _, err := postgres.New(ctx, cfg); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("New while Postgres is stopped: %v, want storage.ErrUnavailable", err)
	}

	pg.Start()
	deadline := time.Now().Add(30 * time.Second)
	for {
		last, err := s.LastSeq(ctx)
		if err == nil {
			if last != 3 {
				t.Fatalf("LastSeq after the outage = %d, want 3", last)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store never recovered: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	if err := s.Append(ctx, recs[3:]); err != nil {
		t.Fatalf("Append after the outage: %v", err)
	}
}
