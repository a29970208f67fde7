package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tier0-ca/tier0/internal/redact"
	"github.com/tier0-ca/tier0/storage"
)

// OpenStore opens the record store with an error that says what to do
// (also used by the CLI's storage and offline audit commands).
func OpenStore(ctx context.Context, dsn string) (storage.AuditStore, error) {
	octx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	s, err := storage.OpenAudit(octx, dsn)
	if err != nil {
		return nil, storeOpenError(dsn, err)
	}
	return s, nil
}

// openStore opens the node's record store. With optional (--store-optional)
// a store that cannot be reached yet does not stop the node: it connects
// (and migrates) in the background while the exporter retries and the
// journal keeps the records.
func openStore(ctx context.Context, dsn string, optional bool, log *slog.Logger) (storage.AuditStore, error) {
	if !optional {
		return OpenStore(ctx, dsn)
	}
	s, err := storage.OpenLazy(ctx, dsn, storage.LazyConfig{Logger: log, Describe: redact.URL(dsn)})
	if err != nil {
		return nil, storeOpenError(dsn, err)
	}
	return s, nil
}

func storeOpenError(dsn string, err error) error {
	if errors.Is(err, storage.ErrSchemaTooNew) {
		return fmt.Errorf("record store: refusing to start: %w (a newer tier0 migrated this database; run that version, or restore a backup taken before the upgrade)", err)
	}
	return fmt.Errorf("record store: cannot open %s: %w (check --store and that the database is up; nothing was issued)", redact.URL(dsn), err)
}
