// Package kmsfake holds the fault-injection knobs shared by the local
// wire-compatible KMS endpoints in awsfake (AWS KMS JSON 1.1 over HTTP) and
// gcpfake (Cloud KMS gRPC). They serve tests and `tier0 dev kms-aws|kms-gcp`;
// they are not KMSes (keys live in memory, there is no auth).
package kmsfake

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Fault is what the fake does to one request.
type Fault int

const (
	None        Fault = iota
	Throttled         // answer with a throttling error
	Unavailable       // answer with an unavailable / internal error
)

// Faults are the knobs; the zero value injects nothing. Safe for concurrent use.
type Faults struct {
	mu           sync.Mutex
	throttleNext int
	throttleP    float64
	unavailable  bool
	delay        time.Duration
	corrupt      bool
	wrongSum     bool
}

// Throttle makes a fraction p (0..1) of requests fail with a throttling error.
func (f *Faults) Throttle(p float64) { f.mu.Lock(); f.throttleP = p; f.mu.Unlock() }

// ThrottleNext makes the next n requests fail with a throttling error.
func (f *Faults) ThrottleNext(n int) { f.mu.Lock(); f.throttleNext = n; f.mu.Unlock() }

// Unavailable makes every request fail (AWS: 500 KMSInternalException;
// GCP: codes.Unavailable) while on.
func (f *Faults) Unavailable(on bool) { f.mu.Lock(); f.unavailable = on; f.mu.Unlock() }

// Delay makes every request wait d (or until the client gives up) first.
func (f *Faults) Delay(d time.Duration) { f.mu.Lock(); f.delay = d; f.mu.Unlock() }

// CorruptSignature makes Sign return a signature that does not verify (with
// a matching checksum, as a buggy KMS would).
func (f *Faults) CorruptSignature(on bool) { f.mu.Lock(); f.corrupt = on; f.mu.Unlock() }

// WrongChecksum makes GCP AsymmetricSign return a wrong signature_crc32c
// (corruption in transit). AWS has no checksums and ignores it.
func (f *Faults) WrongChecksum(on bool) { f.mu.Lock(); f.wrongSum = on; f.mu.Unlock() }

// Reset turns every fault off.
func (f *Faults) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.throttleNext, f.throttleP, f.unavailable, f.delay, f.corrupt, f.wrongSum = 0, 0, false, 0, false, false
}

// Corrupt reports whether CorruptSignature is on.
func (f *Faults) Corrupt() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.corrupt }

// BadChecksum reports whether WrongChecksum is on.
func (f *Faults) BadChecksum() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.wrongSum }

// Before applies the delay and decides the fault for one request. It
// returns ctx's error when the client gave up during the delay.
func (f *Faults) Before(ctx context.Context) (Fault, error) {
	f.mu.Lock()
	d := f.delay
	var fault Fault
	switch {
	case f.unavailable:
		fault = Unavailable
	case f.throttleNext > 0:
		f.throttleNext--
		fault = Throttled
	case f.throttleP > 0 && rand.Float64() < f.throttleP:
		fault = Throttled
	}
	f.mu.Unlock()
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return None, ctx.Err()
		case <-t.C:
		}
	}
	return fault, nil
}

// CorruptBytes flips the bits of the last byte: the result still parses
// (an ECDSA DER s value, an RSA signature) but does not verify.
func CorruptBytes(sig []byte) []byte {
	out := append([]byte(nil), sig...)
	if len(out) > 0 {
		out[len(out)-1] ^= 0xff
	}
	return out
}

// Start listens on addr (host:port; port 0 picks one) and runs serve on
// it in the background; it returns the address listened on. Tests stop a
// fake and Start it again on the same address to simulate an endpoint
// that disappears and comes back.
func Start(addr string, serve func(net.Listener) error) (string, error) {
	lis, err := net.Listen("tcp", addr) // Go listeners set SO_REUSEADDR: the same port again works
	if err != nil {
		return "", fmt.Errorf("kmsfake: listen on %s: %w", addr, err)
	}
	go func() { _ = serve(lis) }()
	return lis.Addr().String(), nil
}
