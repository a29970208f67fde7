// Package signertest is the conformance suite every signer backend passes.
package signertest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/signer"
)

// Run runs the suite. open returns a fresh signer for the same key; Run
// closes it. Signs per goroutine in the concurrency test: 4 (1 with -short).
func Run(t *testing.T, open func(t *testing.T) signer.Signer) {
	t.Run("Public", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		switch pub := s.Public().(type) {
		case *ecdsa.PublicKey:
			if b, err := pub.Bytes(); err != nil || len(b) == 0 {
				t.Fatal("Public() returned an empty ECDSA key")
			}
		case *rsa.PublicKey:
			if pub.N.BitLen() < 2048 {
				t.Fatalf("Public() RSA key has %d bits", pub.N.BitLen())
			}
		default:
			t.Fatalf("Public() = %T, want *ecdsa.PublicKey or *rsa.PublicKey", pub)
		}
		if s.KeyID() == "" {
			t.Error("KeyID() is empty")
		}
	})

	t.Run("SignVerify", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		for _, opts := range optsFor(s.Public()) {
			digest := sha256.Sum256([]byte("tier0 conformance"))
			sig, err := s.Sign(rand.Reader, digest[:], opts)
			if err != nil {
				t.Fatalf("Sign(%T): %v", opts, err)
			}
			if err := signer.Verify(s.Public(), digest[:], sig, opts); err != nil {
				t.Fatalf("Sign(%T): %v", opts, err)
			}
			sig, err = s.SignContext(context.Background(), digest[:], opts)
			if err != nil {
				t.Fatalf("SignContext(%T): %v", opts, err)
			}
			if err := signer.Verify(s.Public(), digest[:], sig, opts); err != nil {
				t.Fatalf("SignContext(%T): %v", opts, err)
			}
		}
	})

	t.Run("WrongDigestLength", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		if _, err := s.Sign(rand.Reader, []byte("short"), crypto.SHA256); err == nil {
			t.Fatal("Sign with a 5-byte SHA-256 digest succeeded")
		}
	})

	t.Run("X509Certificate", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "tier0 signertest"},
			NotBefore:             time.Now().Add(-time.Minute),
			NotAfter:              time.Now().Add(time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, s.Public(), s)
		if err != nil {
			t.Fatalf("CreateCertificate: %v", err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		if err := cert.CheckSignatureFrom(cert); err != nil {
			t.Fatalf("CheckSignatureFrom: %v", err)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		const workers = 64
		n := 4
		if testing.Short() {
			n = 1
		}
		errs := make(chan error, workers*n)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := range n {
					digest := sha256.Sum256(fmt.Appendf(nil, "%d/%d", w, i))
					sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
					if err == nil {
						err = signer.Verify(s.Public(), digest[:], sig, crypto.SHA256)
					}
					if err != nil {
						errs <- fmt.Errorf("worker %d sign %d: %w", w, i, err)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("CanceledContext", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		digest := sha256.Sum256([]byte("canceled"))
		_, err := s.SignContext(ctx, digest[:], crypto.SHA256)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("SignContext(canceled ctx) = %v, want an error wrapping context.Canceled", err)
		}
	})

	t.Run("SignAfterClose", func(t *testing.T) {
		s := open(t)
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		digest := sha256.Sum256([]byte("closed"))
		if _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); !errors.Is(err, signer.ErrClosed) {
			t.Fatalf("Sign after Close = %v, want signer.ErrClosed", err)
		}
		_ = s.Close() // a second Close must not panic
		if s.Public() == nil {
			t.Fatal("Public() after Close is nil")
		}
	})
}

func optsFor(pub crypto.PublicKey) []crypto.SignerOpts {
	if _, ok := pub.(*rsa.PublicKey); ok {
		return []crypto.SignerOpts{crypto.SHA256, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}}
	}
	return []crypto.SignerOpts{crypto.SHA256}
}
