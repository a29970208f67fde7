package ca

import (
	"context"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestMintAttested: an attested SVID carries its generation in a
// non-critical extension (on the in-memory fast-sign key too), a plain
// one carries none.
func TestMintAttested(t *testing.T) {
	e := newEnv(t, nil)
	c, id := e.ca, testAgent
	csr := func() []byte { return makeCSR(t, newP256(t), nil) }
	res, err := c.MintAttested(context.Background(), spiffeid.ID{}, id, csr(), 0, 7)
	if err != nil {
		t.Fatal(err)
	}
	gen, ok, err := AttestationGeneration(res.Cert)
	if err != nil || !ok || gen != 7 {
		t.Fatalf("generation %d %v %v", gen, ok, err)
	}
	for _, e := range res.Cert.Extensions {
		if e.Id.Equal(OIDAttestation) && e.Critical {
			t.Fatal("the attestation extension is critical")
		}
	}
	plain, err := c.MintFor(context.Background(), spiffeid.ID{}, id, csr(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := AttestationGeneration(plain.Cert); ok || err != nil {
		t.Fatalf("plain SVID: %v %v", ok, err)
	}
	if _, err := c.MintAttested(context.Background(), spiffeid.ID{}, id, csr(), 0, 0); err == nil {
		t.Fatal("generation 0 accepted")
	}
}
