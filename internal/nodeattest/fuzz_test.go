package nodeattest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/internal/nodeattest/attesttest"
)

// fuzzAttestor feeds arbitrary evidence to one attestor: it must never
// panic, and anything it refuses is denied, malformed or (x509pop without
// a valid proof) denied, never an internal error; nothing random passes.
func fuzzAttestor(f *testing.F, name string, seeds ...[]byte) {
	fx := newFixture(f)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"chain":[""],"cluster":"prod","token":"a.b.c","document":"{}","pkcs7":"MIIB"}`))
	a, _ := fx.reg.Get(name)
	ch := func(context.Context, []byte) ([]byte, error) { return []byte("sig"), nil }
	f.Fuzz(func(t *testing.T, ev []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := a.Attest(ctx, ev, ch)
		if err == nil && name != K8sPSAT && name != GCPIIT && name != AWSIID {
			t.Fatalf("random evidence attested: %+v", res)
		}
		if err != nil && !errors.Is(err, ErrDenied) && !errors.Is(err, ErrBadEvidence) {
			t.Fatalf("%s: unexpected error class: %v", name, err)
		}
	})
}

func FuzzX509PoPEvidence(f *testing.F) {
	ca := attesttest.NewCA(f, "seed")
	c, _ := ca.Host(f, "seed", []string{"a.example"}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	fuzzAttestor(f, X509PoP, mustJSON(f, X509PoPEvidence{Chain: [][]byte{c.Raw, ca.Cert.Raw}}))
}

func FuzzK8sPSATEvidence(f *testing.F) {
	is := attesttest.NewIssuer(f, "https://k8s.prod", "k1")
	tok := is.Sign(f, aud, time.Now(), time.Now().Add(time.Hour), attesttest.PSATClaims("ns", "sa", "p", "u", "n", "nu"))
	fuzzAttestor(f, K8sPSAT, mustJSON(f, K8sPSATEvidence{Cluster: "prod", Token: tok}))
}

func FuzzGCPIITEvidence(f *testing.F) {
	is := attesttest.NewIssuer(f, "https://accounts.google.com", "g1")
	fuzzAttestor(f, GCPIIT, []byte(is.Sign(f, aud, time.Now(), time.Now().Add(time.Hour), attesttest.GCEClaims("proj-a", "z", "1", "vm"))))
}

func FuzzAWSIIDEvidence(f *testing.F) {
	ca := attesttest.NewCA(f, "aws")
	doc := attesttest.AWSDocument("111122223333", "us-east-1", "i-1")
	fuzzAttestor(f, AWSIID, mustJSON(f, AWSIIDEvidence{Document: string(doc), PKCS7: attesttest.SignAWS(f, ca, doc)}))
}
