package ca

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/tier0-ca/tier0/ca/record"
)

// checkSVID verifies r independently: go-spiffe x509svid.Verify against a
// bundle of the root, plus what Verify does not check.
func checkSVID(t *testing.T, e *testEnv, r Result, want spiffeid.ID, iss Issuer) {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("result error: %v", r.Err)
	}
	if r.ID != want || len(r.Chain) != 1+len(iss.Chain) {
		t.Fatalf("id %s chain len %d", r.ID, len(r.Chain))
	}
	bundle := x509bundle.FromX509Authorities(testTD, []*x509.Certificate{e.pki.root})
	got, chains, err := x509svid.ParseAndVerify(r.Chain, bundle, x509svid.WithTime(e.now))
	if err != nil {
		t.Fatalf("x509svid.Verify: %v", err)
	}
	if got != want || len(chains) == 0 || !chains[0][len(chains[0])-1].Equal(e.pki.root) {
		t.Fatalf("verified id %s, chains %d", got, len(chains))
	}
	c := r.Cert
	switch {
	case c.KeyUsage != x509.KeyUsageDigitalSignature:
		t.Errorf("KeyUsage = %v, want digitalSignature only", c.KeyUsage)
	case len(c.ExtKeyUsage) != 2 || c.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || c.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth:
		t.Errorf("EKU = %v", c.ExtKeyUsage)
	case !c.BasicConstraintsValid || c.IsCA:
		t.Errorf("basic constraints: valid %v CA %v", c.BasicConstraintsValid, c.IsCA)
	case c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128:
		t.Errorf("serial %x: %d bits", c.SerialNumber, c.SerialNumber.BitLen())
	case c.NotAfter.After(iss.Cert.NotAfter):
		t.Errorf("NotAfter %s after issuer's %s", c.NotAfter, iss.Cert.NotAfter)
	case !c.NotBefore.Equal(e.now.Add(-DefaultBackdate)):
		t.Errorf("NotBefore %s, want now-%s", c.NotBefore, DefaultBackdate)
	case len(c.URIs) != 1 || len(c.DNSNames)+len(c.IPAddresses)+len(c.EmailAddresses) != 0:
		t.Errorf("SANs: %v %v %v %v", c.URIs, c.DNSNames, c.IPAddresses, c.EmailAddresses)
	case hex.EncodeToString(c.AuthorityKeyId) != hex.EncodeToString(iss.Cert.SubjectKeyId):
		t.Errorf("AKI %x, want issuer SKI %x", c.AuthorityKeyId, iss.Cert.SubjectKeyId)
	}
	if err := c.CheckSignatureFrom(iss.Cert); err != nil {
		t.Errorf("signature: %v", err)
	}
	rec := r.Record
	spki := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	wantRec := record.Record{
		Serial: c.SerialNumber.Text(16), SPIFFEID: want.String(), NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
		IssuerKeyID: hex.EncodeToString(iss.Cert.SubjectKeyId), PublicKeySHA256: hex.EncodeToString(spki[:]), NodeID: "node-1",
	}
	if rec.Serial != wantRec.Serial || rec.SPIFFEID != wantRec.SPIFFEID || !rec.NotBefore.Equal(wantRec.NotBefore) ||
		!rec.NotAfter.Equal(wantRec.NotAfter) || rec.IssuerKeyID != wantRec.IssuerKeyID ||
		rec.PublicKeySHA256 != wantRec.PublicKeySHA256 || rec.NodeID != wantRec.NodeID || string(rec.CertDER) != string(r.Chain[0]) {
		t.Errorf("record %+v\nwant %+v", rec, wantRec)
	}
	if rec.Seq == 0 || len(rec.Hash) != record.HashSize {
		t.Errorf("record not committed: seq %d", rec.Seq)
	}
}

func TestMintBatchIssues(t *testing.T) {
	for _, useRoot := range []bool{false, true} {
		name := "intermediate"
		if useRoot {
			name = "root"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil)
			iss := e.pki.issuer
			if useRoot {
				iss = e.pki.rootIssue
				if err := e.ca.SetIssuer(iss); err != nil {
					t.Fatal(err)
				}
			}
			reqs := []Request{
				{CSR: makeCSR(t, newP256(t), []string{testWLID.String()})},
				{CSR: makeCSR(t, loadKey(t, "rsa2048.pem"), []string{testWLID2.String()})},
			}
			res, err := e.ca.MintBatch(context.Background(), testAgent, reqs)
			if err != nil {
				t.Fatal(err)
			}
			checkSVID(t, e, res[0], testWLID, iss)
			checkSVID(t, e, res[1], testWLID2, iss)
			if res[0].Record.AgentID != testAgent.String() {
				t.Errorf("AgentID %q", res[0].Record.AgentID)
			}
		})
	}
}

func TestLifetimeCappedAtIssuer(t *testing.T) {
	e := newEnv(t, nil)
	short := newPKI(t, e.now, 30*time.Minute)
	// Chain verification needs the short PKI's root.
	e.pki = short
	if err := e.ca.SetIssuer(short.issuer); err != nil {
		t.Fatal(err)
	}
	csr := makeCSR(t, newP256(t), []string{testWLID.String()})
	res, _ := e.ca.MintBatch(context.Background(), testAgent, []Request{{CSR: csr}})
	checkSVID(t, e, res[0], testWLID, short.issuer)
	if !res[0].Cert.NotAfter.Equal(short.inter.NotAfter) {
		t.Errorf("NotAfter %s, want issuer's %s", res[0].Cert.NotAfter, short.inter.NotAfter)
	}

	tooShort := newPKI(t, e.now, 10*time.Minute)
	if err := e.ca.SetIssuer(tooShort.issuer); err != nil {
		t.Fatal(err)
	}
	res, _ = e.ca.MintBatch(context.Background(), testAgent, []Request{{CSR: csr}})
	want := "ca: issuer expires too soon (" + tooShort.inter.NotAfter.UTC().Format(time.RFC3339) + "): issuer error"
	if res[0].Err == nil || res[0].Err.Error() != want || !errors.Is(res[0].Err, ErrIssuer) {
		t.Errorf("got %v, want %s", res[0].Err, want)
	}
}

// badSigner wraps a signer and fails or corrupts signatures, like a broken
// HSM/KMS.
type badSigner struct {
	crypto.Signer
	fail    bool
	corrupt bool
}

func (b badSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	if b.fail {
		return nil, errors.New("kms: throttled")
	}
	sig, err := b.Signer.Sign(r, d, o)
	if b.corrupt && err == nil {
		sig[len(sig)-1] ^= 1
	}
	return sig, err
}

func TestSignerFailures(t *testing.T) {
	for _, tt := range []struct {
		name   string
		signer badSigner
		want   string
	}{
		{"error", badSigner{fail: true}, "ca: sign svid for spiffe://example.org/ns/prod/sa/web: kms: throttled: issuer error"},
		{"bad signature", badSigner{corrupt: true}, "ca: sign svid for spiffe://example.org/ns/prod/sa/web: x509: signature returned by signer is invalid: x509: ECDSA verification failure: issuer error"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			tt.signer.Signer = e.pki.interKey
			iss := e.pki.issuer
			iss.Signer = tt.signer
			if err := e.ca.SetIssuer(iss); err != nil {
				t.Fatal(err)
			}
			res, _ := e.ca.MintBatch(context.Background(), testAgent, []Request{{CSR: makeCSR(t, newP256(t), []string{testWLID.String()})}})
			if res[0].Err == nil || res[0].Err.Error() != tt.want || !errors.Is(res[0].Err, ErrIssuer) {
				t.Errorf("got %v\nwant %s", res[0].Err, tt.want)
			}
			if e.j.calls != 0 {
				t.Errorf("journal called")
			}
		})
	}
}

func TestSetIssuerRejects(t *testing.T) {
	now := time.Now()
	p := newPKI(t, now, time.Hour)
	other := newP256(t)
	leafEnv := newEnv(t, nil)
	r, err := leafEnv.ca.MintFor(context.Background(), spiffeid.ID{}, testWLID, makeCSR(t, other, nil), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		iss  Issuer
		want string
	}{
		{"empty", Issuer{}, "ca: issuer: signer and certificate are required: issuer error"},
		{"key mismatch", Issuer{Signer: other, Cert: p.inter, Chain: []*x509.Certificate{p.inter}}, "ca: issuer: signer public key does not match certificate: issuer error"},
		{"root with chain", Issuer{Signer: p.rootKey, Cert: p.root, Chain: []*x509.Certificate{p.root}}, "ca: issuer: chain must be empty when the issuer is the root: issuer error"},
		{"intermediate without chain", Issuer{Signer: p.interKey, Cert: p.inter}, "ca: issuer: chain must start with the issuer certificate: issuer error"},
		{"leaf", Issuer{Signer: other, Cert: r.Cert}, "ca: issuer: certificate is not a CA: issuer error"},
	} {
		if err := leafEnv.ca.SetIssuer(tt.iss); err == nil || err.Error() != tt.want {
			t.Errorf("%s: got %v\nwant %s", tt.name, err, tt.want)
		}
	}
	if _, err := NewIntermediate(testTD, p.issuer, other.Public(), time.Hour, now); err == nil ||
		err.Error() != "ca: new intermediate: parent has path length zero: issuer error" {
		t.Errorf("intermediate under pathlen-0 parent: %v", err)
	}
}

func TestNewRootAndIntermediate(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	p := newPKI(t, now, 48*time.Hour) // longer than the root's 24h
	if !p.root.IsCA || p.root.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign || len(p.root.SubjectKeyId) == 0 ||
		len(p.root.URIs) != 1 || p.root.URIs[0].String() != "spiffe://example.org" {
		t.Errorf("root profile: %+v", p.root)
	}
	if !p.inter.IsCA || !p.inter.MaxPathLenZero || p.inter.MaxPathLen != 0 || len(p.inter.SubjectKeyId) == 0 ||
		string(p.inter.AuthorityKeyId) != string(p.root.SubjectKeyId) || !p.inter.NotAfter.Equal(p.root.NotAfter) {
		t.Errorf("intermediate profile: pathlen0 %v notAfter %s root %s", p.inter.MaxPathLenZero, p.inter.NotAfter, p.root.NotAfter)
	}
	if err := p.inter.CheckSignatureFrom(p.root); err != nil {
		t.Error(err)
	}
}

func TestConcurrentMintDistinctSerials(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Logger = discardLogger })
	const workers, batches, per = 8, 3, 8
	csrs := make([]Request, per)
	for i := range csrs {
		csrs[i] = Request{CSR: makeCSR(t, newP256(t), []string{testWLID.String()})}
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers*batches)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < batches; b++ {
				if w == 0 && b == 1 { // swap the issuer mid-flight
					if err := e.ca.SetIssuer(e.ca.Issuer()); err != nil {
						errs <- err
					}
				}
				res, err := e.ca.MintBatch(context.Background(), testAgent, csrs)
				if err != nil {
					errs <- err
					continue
				}
				for _, r := range res {
					if r.Err != nil {
						errs <- r.Err
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	recs := e.j.records()
	for _, r := range recs {
		if seen[r.Serial] {
			t.Fatalf("duplicate serial %s", r.Serial)
		}
		seen[r.Serial] = true
	}
	if len(seen) != workers*batches*per {
		t.Fatalf("%d serials, want %d", len(seen), workers*batches*per)
	}
	prev := record.Genesis
	for _, r := range recs {
		if err := r.Verify(prev); err != nil {
			t.Fatal(err)
		}
		prev = r.Hash
	}
}
