package kmsctl

import (
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tier0-ca/tier0/signer/internal/errs"
)

type state int

const (
	closed state = iota
	open
	halfOpen
)

// breaker is a consecutive-failure circuit breaker. While open every call
// fails fast with errs.ErrUnavailable; after the open period one call is let
// through as a probe (half-open): its success closes the circuit, its failure
// reopens it for twice as long (up to max).
type breaker struct {
	threshold int
	min, max  time.Duration
	gauge     prometheus.Gauge
	log       *slog.Logger
	now       func() time.Time // nil: time.Now

	mu       sync.Mutex
	state    state
	failures int
	backoff  time.Duration
	until    time.Time
	probing  bool
}

func (b *breaker) clock() time.Time {
	if b.now != nil {
		return b.now()
	}
	return time.Now()
}

func (b *breaker) allow() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case open:
		if b.clock().Before(b.until) {
			return errs.ErrUnavailable
		}
		b.state = halfOpen
		b.probing = true
		return nil
	case halfOpen:
		if b.probing {
			return errs.ErrUnavailable
		}
		b.probing = true
	}
	return nil
}

// release gives back a half-open probe slot whose outcome says nothing
// about the KMS (the caller gave up before or during the call).
func (b *breaker) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == halfOpen {
		b.probing = false
	}
}

func (b *breaker) record(c Class) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c != Unavailable {
		// The KMS answered (success, throttling or a client error): healthy.
		if b.state != closed {
			b.log.Info("signer: kms circuit closed")
			b.gauge.Set(0)
		}
		b.state, b.failures, b.backoff, b.probing = closed, 0, b.min, false
		return
	}
	switch b.state {
	case closed:
		b.failures++
		if b.failures < b.threshold {
			return
		}
		b.backoff = b.min
	case halfOpen:
		b.backoff = min(2*b.backoff, b.max)
	case open:
		return // a call admitted before the circuit opened
	}
	b.state, b.probing = open, false
	b.until = b.clock().Add(b.backoff)
	b.gauge.Set(1)
	b.log.Warn("signer: kms circuit open", "for", b.backoff, "consecutive_failures", b.failures)
}
