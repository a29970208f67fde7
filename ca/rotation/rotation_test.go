package rotation

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// faultySigner wraps a root key; fail makes Sign error, corrupt makes it
// return a signature that does not verify.
type faultySigner struct {
	crypto.Signer
	fail, corrupt atomic.Bool
}

func (f *faultySigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	if f.fail.Load() {
		return nil, errors.New("kms unavailable")
	}
	sig, err := f.Signer.Sign(r, d, o)
	if f.corrupt.Load() && err == nil {
		sig[len(sig)-1] ^= 0xff
	}
	return sig, err
}

type recorder struct{ set []ca.Issuer }

func (r *recorder) SetIssuer(iss ca.Issuer) error { r.set = append(r.set, iss); return nil }

func newRoot(t *testing.T, now time.Time) (ca.Issuer, *faultySigner) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	fs := &faultySigner{Signer: k}
	cert, err := ca.NewRoot(td, k, 365*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	return ca.Issuer{Signer: fs, Cert: cert}, fs
}

func TestDelegatedSlots(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	const life = 6 * time.Hour
	d, err := New(Config{TrustDomain: td, Lifetime: life, Clock: clk.Now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Step(ctx); !errors.Is(err, ErrNoRoot) {
		t.Fatalf("Step without root: %v, want ErrNoRoot", err)
	}
	root, rootKey := newRoot(t, clk.now)
	d.SetRoot(root)
	wake, err := d.Step(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first, ok := d.Current()
	if !ok || first.Cert.CheckSignatureFrom(root.Cert) != nil || first.Cert.NotAfter.Sub(clk.now) != life {
		t.Fatalf("first intermediate: ok=%v, not after %v", ok, first.Cert.NotAfter)
	}
	if want := clk.now.Add(life / 2); !wake.Equal(want) {
		t.Fatalf("wake %v, want prepare time %v", wake, want)
	}
	rec := &recorder{}
	if err := d.SetTarget(rec); err != nil || len(rec.set) != 1 {
		t.Fatalf("SetTarget: %v, %d issuers set", err, len(rec.set))
	}

	// Prepare at 1/2: the KMS fails first; the current issuer is kept and
	// the retry comes before the activation time.
	clk.now = wake
	rootKey.fail.Store(true)
	retry, err := d.Step(ctx)
	if err == nil || !strings.Contains(err.Error(), "rotation: prepare next intermediate (attempt 1)") {
		t.Fatalf("prepare with KMS down: %v", err)
	}
	if cur, _ := d.Current(); cur.Cert != first.Cert || !retry.After(clk.now) {
		t.Fatalf("issuer changed on failure or retry %v not after now", retry)
	}
	rootKey.fail.Store(false)
	rootKey.corrupt.Store(true)
	if _, err := d.Step(ctx); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("prepare with a bad KMS signature: %v", err)
	}
	rootKey.corrupt.Store(false)
	wake, err = d.Step(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := first.Cert.NotAfter.Add(-life / 6); !wake.Equal(want) {
		t.Fatalf("wake %v, want activation time %v", wake, want)
	}
	if len(rec.set) != 1 {
		t.Fatalf("prepared intermediate was activated early")
	}
	// Activate at 5/6: the old one has exactly 1/6 of life left, so an
	// SVID of life/6 signed just before the switch fits within it.
	clk.now = wake
	if _, err := d.Step(ctx); err != nil {
		t.Fatal(err)
	}
	second, _ := d.Current()
	if len(rec.set) != 2 || rec.set[1].Cert != second.Cert || second.Cert.Equal(first.Cert) {
		t.Fatalf("switch did not happen: %d issuers set", len(rec.set))
	}
	if left := first.Cert.NotAfter.Sub(clk.now); left < life/MinLifetimeFactor {
		t.Fatalf("old intermediate had %v left at the switch, want >= %v", left, life/MinLifetimeFactor)
	}
	if second.Cert.CheckSignatureFrom(root.Cert) != nil {
		t.Fatal("second intermediate not signed by the root")
	}

	// A new root replaces the intermediate at the next step.
	root2, _ := newRoot(t, clk.now)
	d.SetRoot(root2)
	if _, err := d.Step(ctx); err != nil {
		t.Fatal(err)
	}
	third, _ := d.Current()
	if third.Cert.CheckSignatureFrom(root2.Cert) != nil || len(rec.set) != 3 {
		t.Fatal("intermediate not replaced after a root change")
	}
}

func TestDelegatedExpiredRecovers(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	d, _ := New(Config{TrustDomain: td, Lifetime: time.Hour, Clock: clk.Now, Logger: slog.New(slog.DiscardHandler)})
	root, rootKey := newRoot(t, clk.now)
	d.SetRoot(root)
	if _, err := d.Step(ctx); err != nil {
		t.Fatal(err)
	}
	// KMS down for longer than the intermediate lives.
	rootKey.fail.Store(true)
	clk.now = clk.now.Add(2 * time.Hour)
	if _, err := d.Step(ctx); err == nil {
		t.Fatal("want an error while the KMS is down")
	}
	rootKey.fail.Store(false)
	if _, err := d.Step(ctx); err != nil {
		t.Fatalf("after the KMS came back: %v", err)
	}
	cur, _ := d.Current()
	if !cur.Cert.NotAfter.After(clk.now) {
		t.Fatal("still on an expired intermediate")
	}
}
