package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tier0-ca/tier0/signer"
)

// wrongKey signs with another key than the one it reports (a faulty KMS).
type wrongKey struct{ pub, priv *ecdsa.PrivateKey }

func (w wrongKey) Public() crypto.PublicKey { return w.pub.Public() }
func (w wrongKey) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	return w.priv.Sign(r, d, o)
}
func (w wrongKey) SignContext(_ context.Context, d []byte, o crypto.SignerOpts) ([]byte, error) {
	return w.Sign(rand.Reader, d, o)
}
func (wrongKey) KeyID() string         { return "awskms:key/1" }
func (wrongKey) Health() signer.Health { return signer.Health{State: signer.Up} }
func (wrongKey) Close() error          { return nil }

func TestCheckedSignerRefusesBadSignatures(t *testing.T) {
	a, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	bad := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bad"}, []string{"backend"})
	d := sha256.Sum256([]byte("tbs"))
	s := &checkedSigner{Signer: wrongKey{pub: a, priv: b}, backend: "awskms", verify: true, bad: bad}
	_, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
	if err == nil || !strings.Contains(err.Error(), "keys: CA key awskms:key/1 returned a signature that does not verify (KMS fault; nothing was issued)") {
		t.Fatalf("bad signature: %v", err)
	}
	var m dto.Metric
	_ = bad.WithLabelValues("awskms").Write(&m)
	if m.GetCounter().GetValue() != 1 {
		t.Fatalf("bad signatures counted %v", m.GetCounter().GetValue())
	}
	good := &checkedSigner{Signer: wrongKey{pub: a, priv: a}, backend: "awskms", verify: true, bad: bad}
	if _, err := good.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
}
