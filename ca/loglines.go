package ca

import (
	"context"
	"errors"
	"log/slog"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/signer"
)

// Per-item failure lines go through a rate limiter (internal/ratelog):
// one line when the class of failure changes, then at most one line per
// ratelog.DefaultEvery with the count held back. Under an outage (a
// signer down, a journal that cannot write) every item fails alike, and a
// line per item was tens of thousands of lines a second.

// denied logs a refused or failed item.
func (c *CA) denied(ctx context.Context, caller, id spiffeid.ID, err error) {
	level := slog.LevelInfo
	switch {
	case errors.Is(err, signer.ErrUnavailable):
		// The signer's breaker logs the outage once per state change and
		// the api answers Unavailable with a retry hint: a known, handled
		// state, not an error of ours per item.
		level = slog.LevelWarn
	case errors.Is(err, ErrIssuer):
		level = slog.LevelError // our fault, not the caller's
	}
	c.lines.Log(ctx, level, "svid denied", errClass(err), "ca: svid denied",
		slog.String("caller", caller.String()), slog.String("spiffe_id", idString(id)), slog.String("error", err.Error()))
}

// commitFailed logs a failed journal commit of n records.
func (c *CA) commitFailed(ctx context.Context, n int, err error) {
	c.lines.Log(ctx, slog.LevelWarn, "journal commit failed", errClass(err), "ca: journal commit failed",
		slog.Int("records", n), slog.String("error", err.Error()))
}

// errClass names the kind of err: its sentinel, or its innermost error's
// text when it has none of ours (the journal's own: "not the leader", "no
// space left on device", ...).
func errClass(err error) string {
	for _, s := range []error{ErrPermissionDenied, ErrInvalidCSR, ErrInvalidID, ErrInvalidTTL, ErrWeakKey,
		ErrBatchTooLarge, ErrIssuer, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}
