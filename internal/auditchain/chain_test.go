package auditchain

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"testing"
	"time"
)

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func issue(t *testing.T, parent *ca, name string, isCA bool, ski byte) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(ski)), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: isCA, BasicConstraintsValid: true,
		SubjectKeyId: []byte{ski}, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	if !isCA {
		u, _ := url.Parse("spiffe://example.org/web")
		tmpl.URIs, tmpl.KeyUsage = []*url.URL{u}, x509.KeyUsageDigitalSignature
	}
	signer, pc := key, tmpl
	if parent != nil {
		signer, pc = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pc, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &ca{cert: c, key: key}
}

func TestBuild(t *testing.T) {
	root := issue(t, nil, "root", true, 1)
	other := issue(t, nil, "other root", true, 9)
	in1 := issue(t, root, "intermediate 1", true, 2)
	in2 := issue(t, root, "intermediate 2", true, 3)
	leaf := issue(t, in2, "leaf", false, 4)
	direct := issue(t, root, "direct", false, 5)
	cands := []Candidate{{Seq: 3, DER: in1.cert.Raw}, {Seq: 8, DER: in2.cert.Raw}, {Seq: 9, DER: leaf.cert.Raw}}
	roots := [][]byte{other.cert.Raw, root.cert.Raw}

	chain, err := Build(leaf.cert.Raw, cands, roots)
	if err != nil || len(chain) != 3 || chain[1].Seq != 8 || chain[1].Cert.Subject.CommonName != "intermediate 2" ||
		!chain[2].Root || chain[2].Cert.Subject.CommonName != "root" {
		t.Fatalf("chain %+v, %v", chain, err)
	}
	if chain, err := Build(direct.cert.Raw, cands, roots); err != nil || len(chain) != 2 || !chain[1].Root {
		t.Fatalf("leaf signed by the root: %+v, %v", chain, err)
	}
	// The intermediate is not in the log: the chain stops at the leaf.
	chain, err = Build(leaf.cert.Raw, cands[:1], roots)
	if !errors.Is(err, ErrBroken) || len(chain) != 1 {
		t.Fatalf("without its intermediate: %+v, %v", chain, err)
	}
	// An impostor with the right key ID but another key does not link.
	fake := issue(t, other, "intermediate 2", true, 3)
	if chain, err := Build(leaf.cert.Raw, []Candidate{{Seq: 1, DER: fake.cert.Raw}}, roots); !errors.Is(err, ErrBroken) || len(chain) != 1 {
		t.Fatalf("impostor intermediate: %+v, %v", chain, err)
	}
	if _, err := Build([]byte{0x30, 0}, cands, roots); err == nil {
		t.Fatal("garbage leaf accepted")
	}
}
