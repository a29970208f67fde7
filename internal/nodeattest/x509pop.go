package nodeattest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"
)

// x509pop: the agent proves possession of the private key of a
// certificate that chains to a configured CA bundle (machine PKI). The
// server sends a fresh random nonce on the attestation stream; the agent
// signs ChallengeMessage(td, nonce) with the key. A recorded transcript
// is useless: the next attestation has another nonce.
//
// Config:
//
//	ca_bundle: /etc/tier0/hosts-ca.pem          # PEM roots, required
//	agent_name: "x509pop.{{.Fingerprint}}"      # default; or {{.CN}}, {{.Serial}}
type x509PoPConfig struct {
	CABundle  string `yaml:"ca_bundle"`
	AgentName string `yaml:"agent_name"`
}

// X509PoPEvidence is the evidence an agent sends: its certificate chain,
// leaf first, DER (intermediates optional).
type X509PoPEvidence struct {
	Chain [][]byte `json:"chain"`
}

type x509PoP struct {
	roots    *x509.CertPool
	rootList []*x509.Certificate
	td       string
	clock    func() time.Time
	name     nameTemplate
}

func newX509PoP(cfg Config, text string) (Attestor, error) {
	var c x509PoPConfig
	if err := decodeSection(text, &c); err != nil {
		return nil, err
	}
	if c.CABundle == "" {
		return nil, errors.New("config: ca_bundle is required")
	}
	raw, err := readFileLimited(c.CABundle)
	if err != nil {
		return nil, fmt.Errorf("ca_bundle: %w", err)
	}
	certs, err := parsePEMCerts(raw)
	if err != nil {
		return nil, fmt.Errorf("ca_bundle %s: %w", c.CABundle, err)
	}
	a := &x509PoP{roots: x509.NewCertPool(), rootList: certs, td: cfg.TrustDomain.Name(), clock: cfg.Clock}
	for _, cert := range certs {
		a.roots.AddCert(cert)
	}
	if a.name, err = parseNameTemplate(c.AgentName, "x509pop.{{.Fingerprint}}"); err != nil {
		return nil, err
	}
	return a, nil
}

func (*x509PoP) Name() string { return X509PoP }

// ChallengeMessage is what the agent signs (SHA-256 digest, or the message
// itself for Ed25519): bound to the trust domain and the server's nonce.
func ChallengeMessage(trustDomain string, nonce []byte) []byte {
	m := []byte("tier0 x509pop v1\n" + trustDomain + "\n")
	return append(m, nonce...)
}

// SignChallenge answers an x509pop challenge with key (the agent side).
func SignChallenge(key crypto.Signer, trustDomain string, nonce []byte) ([]byte, error) {
	msg := ChallengeMessage(trustDomain, nonce)
	if _, ok := key.Public().(ed25519.PublicKey); ok {
		return key.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	d := sha256.Sum256(msg)
	return key.Sign(rand.Reader, d[:], crypto.SHA256)
}

func (a *x509PoP) Attest(ctx context.Context, evidence []byte, challenge ChallengeFunc) (Result, error) {
	var ev X509PoPEvidence
	if err := strictJSON(evidence, &ev); err != nil {
		return Result{}, err
	}
	if len(ev.Chain) == 0 || len(ev.Chain) > 8 {
		return Result{}, bad("x509pop: want 1 to 8 certificates")
	}
	certs := make([]*x509.Certificate, len(ev.Chain))
	for i, der := range ev.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return Result{}, bad("x509pop: certificate %d: %v", i, err)
		}
		certs[i] = c
	}
	leaf := certs[0]
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: a.roots, Intermediates: inter, CurrentTime: a.clock(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return Result{}, denied("x509pop: certificate: %v", err)
	}
	if challenge == nil {
		return Result{}, errors.New("nodeattest: x509pop needs a challenge")
	}
	nonce := make([]byte, 32)
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return Result{}, fmt.Errorf("nodeattest: x509pop nonce: %w", err)
	}
	sig, err := challenge(ctx, nonce)
	if err != nil {
		return Result{}, err
	}
	if err := verifyPoP(leaf.PublicKey, ChallengeMessage(a.td, nonce), sig); err != nil {
		return Result{}, denied("x509pop: proof of possession: %v", err)
	}
	fp := sha256.Sum256(leaf.Raw)
	fingerprint := hex.EncodeToString(fp[:])
	name, err := a.name.name(struct{ Fingerprint, CN, Serial string }{fingerprint, segment(leaf.Subject.CommonName), leaf.SerialNumber.Text(16)})
	if err != nil {
		return Result{}, err
	}
	p := "x509pop:"
	sels := []string{p + "subject:cn:" + leaf.Subject.CommonName, p + "fingerprint:" + fingerprint}
	for _, c := range chains[0][1:] {
		h := sha256.Sum256(c.Raw)
		sels = append(sels, p+"ca:fingerprint:"+hex.EncodeToString(h[:]))
	}
	for _, d := range leaf.DNSNames {
		sels = append(sels, p+"san:dns:"+d)
	}
	for _, u := range leaf.URIs {
		sels = append(sels, p+"san:uri:"+u.String())
	}
	return Result{AgentName: name, Selectors: sortedSelectors(sels),
		Detail: fmt.Sprintf("certificate %s (CN %q), key proven", fingerprint[:16], leaf.Subject.CommonName)}, nil
}

func verifyPoP(pub any, msg, sig []byte) error {
	d := sha256.Sum256(msg)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, d[:], sig) {
			return errors.New("bad ECDSA signature")
		}
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, d[:], sig); err != nil {
			if err := rsa.VerifyPSS(k, crypto.SHA256, d[:], sig, nil); err != nil {
				return errors.New("bad RSA signature")
			}
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(k, msg, sig) {
			return errors.New("bad Ed25519 signature")
		}
	default:
		return fmt.Errorf("unsupported key type %T", pub)
	}
	return nil
}
