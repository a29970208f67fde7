package signer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha256" // HashFor's hashes, for crypto.Hash.New
	_ "crypto/sha512"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// SelfTest signs a random digest of the key's hash (HashFor) and verifies
// the signature with the public key. It returns the signing latency.
func SelfTest(ctx context.Context, s Signer) (time.Duration, error) {
	h := HashFor(s.Public())
	digest := randomDigest(h)
	start := time.Now()
	sig, err := s.SignContext(ctx, digest, h)
	latency := time.Since(start)
	if err != nil {
		return latency, fmt.Errorf("signer: self-test of %s: sign: %w", s.KeyID(), err)
	}
	if err := Verify(s.Public(), digest, sig, h); err != nil {
		return latency, fmt.Errorf("signer: self-test of %s: %w", s.KeyID(), err)
	}
	return latency, nil
}

// Probe is the periodic health check of a key that signs rarely (a
// delegated-mode root signs one intermediate every few hours): it signs a
// random digest of the key's hash and verifies the signature, so that a
// dead HSM or KMS is noticed (and its breaker and health updated) before
// the next rotation needs it. While the signer is Down it fails at once
// with the breaker's *UnavailableError.
func Probe(ctx context.Context, s Signer) error {
	_, err := SelfTest(ctx, s)
	return err
}

func randomDigest(h crypto.Hash) []byte {
	msg := make([]byte, 32)
	_, _ = rand.Read(msg)
	d := h.New()
	d.Write(msg)
	return d.Sum(nil)
}

// Verify checks sig over digest with an ECDSA (ASN.1) or RSA (PKCS #1 v1.5,
// or PSS when opts is *rsa.PSSOptions) public key.
func Verify(pub crypto.PublicKey, digest, sig []byte, opts crypto.SignerOpts) error {
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(pub, digest, sig) {
			return errors.New("signer: ECDSA signature does not verify with the public key")
		}
		return nil
	case *rsa.PublicKey:
		var err error
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			err = rsa.VerifyPSS(pub, opts.HashFunc(), digest, sig, pss)
		} else {
			err = rsa.VerifyPKCS1v15(pub, opts.HashFunc(), digest, sig)
		}
		if err != nil {
			return fmt.Errorf("signer: RSA signature does not verify with the public key: %w", err)
		}
		return nil
	}
	return fmt.Errorf("signer: unsupported public key type %T", pub)
}

// BenchResult is what Bench measured.
type BenchResult struct {
	Signs    int
	PerSec   float64
	P50, P99 time.Duration
}

// Bench signs digests of the key's hash (HashFor) from concurrency
// goroutines for d and reports throughput and latency percentiles. It stops
// at the first error and verifies one signature per goroutine.
func Bench(ctx context.Context, s Signer, concurrency int, d time.Duration) (BenchResult, error) {
	if concurrency <= 0 {
		concurrency = 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	deadline := time.Now().Add(d)
	lat := make([][]time.Duration, concurrency)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	h := HashFor(s.Public())
	start := time.Now()
	for w := range concurrency {
		wg.Go(func() {
			digest := randomDigest(h)
			for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				t0 := time.Now()
				sig, err := s.SignContext(ctx, digest, h)
				if err != nil {
					if ctx.Err() == nil {
						fail(fmt.Errorf("signer: bench: %w", err))
					}
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
				if i == 0 {
					if err := Verify(s.Public(), digest, sig, h); err != nil {
						fail(fmt.Errorf("signer: bench: %w", err))
						return
					}
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	r := BenchResult{Signs: len(all)}
	if elapsed > 0 {
		r.PerSec = float64(len(all)) / elapsed.Seconds()
	}
	if len(all) > 0 {
		r.P50 = all[len(all)*50/100]
		r.P99 = all[min(len(all)-1, len(all)*99/100)]
	}
	return r, firstErr
}
