package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
)

func TestMarkUnavailable(t *testing.T) {
	never := func(error) bool { return false }
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	backendSaysDown := errors.New("backend: disk full")
	cases := []struct {
		name string
		err  error
		down func(error) bool
		want bool
	}{
		{"nil", nil, never, false},
		{"net op error", fmt.Errorf("postgres: query: %w", refused), never, true},
		{"EOF mid-reply", fmt.Errorf("postgres: query: %w", io.ErrUnexpectedEOF), never, true},
		{"connection reset", fmt.Errorf("x: %w", syscall.ECONNRESET), never, true},
		{"backend rule", backendSaysDown, func(err error) bool { return errors.Is(err, backendSaysDown) }, true},
		{"bad statement", errors.New("postgres: syntax error"), never, false},
		{"bad filter", fmt.Errorf("%w: limit", ErrBadFilter), never, false},
		{"caller canceled", fmt.Errorf("x: %w: %w", context.Canceled, refused), never, false},
	}
	for _, c := range cases {
		err := c.err
		MarkUnavailable(&err, c.down)
		if got := errors.Is(err, ErrUnavailable); got != c.want {
			t.Errorf("%s: marked %v, want %v (%v)", c.name, got, c.want, err)
		}
		if c.err != nil && !errors.Is(err, c.err) {
			t.Errorf("%s: the cause left the chain: %v", c.name, err)
		}
	}
	// Marked once, with the cause's message (credentials masked).
	err := fmt.Errorf("open postgres://tier0:pw@db/x: %w", refused)
	MarkUnavailable(&err, never)
	MarkUnavailable(&err, never)
	if want := "storage: record store unavailable: open postgres://xxxxx@db/x: dial tcp: connection refused"; err.Error() != want {
		t.Errorf("message %q\nwant %q", err, want)
	}
	if strings.Count(err.Error(), "unavailable") != 1 {
		t.Errorf("marked twice: %v", err)
	}
}
