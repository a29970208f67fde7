package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tier0-ca/tier0/api/client"
	"github.com/tier0-ca/tier0/cmd/tier0-agent/internal/cloudmeta"
	"github.com/tier0-ca/tier0/internal/nodeattest"
)

// attestFlags are `tier0-agent bootstrap --attestor NAME` and the
// attestor's evidence sources.
type attestFlags struct {
	attestor     string
	evidenceFile string // raw evidence (any attestor)
	x509Cert     string
	x509Key      string
	k8sCluster   string
	k8sToken     string
	gcpToken     string
	awsDoc       string
	awsPKCS7     string
	gcpMetadata  string
	awsIMDS      string
}

func (a *attestFlags) register(f *pflag.FlagSet) {
	f.StringVar(&a.attestor, "attestor", "", "node attestor instead of --token: x509pop, k8s_psat, gcp_iit or aws_iid (the server must enable it)")
	f.StringVar(&a.evidenceFile, "evidence-file", "", "the attestor's evidence as sent (JSON; gcp_iit: the token); instead of the attestor's own flags")
	f.StringVar(&a.x509Cert, "x509pop-cert", "", "x509pop: PEM certificate chain of this host (leaf first)")
	f.StringVar(&a.x509Key, "x509pop-key", "", "x509pop: PEM private key of --x509pop-cert (signs the server's challenge)")
	f.StringVar(&a.k8sCluster, "k8s-psat-cluster", "", "k8s_psat: the cluster's name as the server configures it")
	f.StringVar(&a.k8sToken, "k8s-psat-token-file", "/var/run/secrets/tokens/tier0-agent", "k8s_psat: projected service-account token (audience spiffe://TD)")
	f.StringVar(&a.gcpToken, "gcp-iit-token-file", "", "gcp_iit: instance identity token (audience spiffe://TD, format=full); default: fetched from --gcp-metadata-url")
	f.StringVar(&a.gcpMetadata, "gcp-metadata-url", cloudmeta.GCEMetadataURL, "gcp_iit: the GCE metadata server")
	f.StringVar(&a.awsDoc, "aws-iid-document-file", "", "aws_iid: instance identity document; default: fetched from --aws-imds-url (IMDSv2)")
	f.StringVar(&a.awsPKCS7, "aws-iid-pkcs7-file", "", "aws_iid: its PKCS#7 signature, base64 (IMDS .../instance-identity/rsa2048); with --aws-iid-document-file")
	f.StringVar(&a.awsIMDS, "aws-imds-url", cloudmeta.AWSIMDSURL, "aws_iid: the EC2 instance metadata service")
}

// evidence builds the evidence and the challenge responder for the
// trust domain td.
func (a *attestFlags) evidence(ctx context.Context, td string) ([]byte, client.ChallengeResponder, error) {
	var respond client.ChallengeResponder
	if a.attestor == nodeattest.X509PoP {
		if a.x509Key == "" {
			return nil, nil, errors.New("x509pop: --x509pop-key is required (it answers the server's challenge)")
		}
		key, err := loadSigner(a.x509Key)
		if err != nil {
			return nil, nil, fmt.Errorf("--x509pop-key: %w", err)
		}
		respond = func(nonce []byte) ([]byte, error) { return nodeattest.SignChallenge(key, td, nonce) }
	}
	if a.evidenceFile != "" {
		b, err := os.ReadFile(a.evidenceFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--evidence-file: %w", err)
		}
		return b, respond, nil
	}
	read := func(flag, path string) (string, error) {
		if path == "" {
			return "", fmt.Errorf("%s: --%s is required", a.attestor, flag)
		}
		b, err := os.ReadFile(path) //nolint:gosec // G304: the operator names the file
		if err != nil {
			return "", fmt.Errorf("--%s: %w", flag, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	switch a.attestor {
	case nodeattest.X509PoP:
		raw, err := read("x509pop-cert", a.x509Cert)
		if err != nil {
			return nil, nil, err
		}
		var ev nodeattest.X509PoPEvidence
		for rest := []byte(raw); ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			if b.Type == "CERTIFICATE" {
				ev.Chain = append(ev.Chain, b.Bytes)
			}
		}
		if len(ev.Chain) == 0 {
			return nil, nil, errors.New("--x509pop-cert: no PEM certificate")
		}
		b, err := json.Marshal(ev)
		return b, respond, err
	case nodeattest.K8sPSAT:
		if a.k8sCluster == "" {
			return nil, nil, errors.New("k8s_psat: --k8s-psat-cluster is required")
		}
		tok, err := read("k8s-psat-token-file", a.k8sToken)
		if err != nil {
			return nil, nil, err
		}
		b, err := json.Marshal(nodeattest.K8sPSATEvidence{Cluster: a.k8sCluster, Token: tok})
		return b, nil, err
	case nodeattest.GCPIIT:
		if a.gcpToken == "" {
			tok, err := cloudmeta.GCEIdentityToken(ctx, a.gcpMetadata, "spiffe://"+td)
			return []byte(tok), nil, err
		}
		tok, err := read("gcp-iit-token-file", a.gcpToken)
		return []byte(tok), nil, err
	case nodeattest.AWSIID:
		if a.awsDoc == "" && a.awsPKCS7 == "" {
			doc, sig, err := cloudmeta.AWSIdentity(ctx, a.awsIMDS)
			if err != nil {
				return nil, nil, err
			}
			b, err := json.Marshal(nodeattest.AWSIIDEvidence{Document: doc, PKCS7: sig})
			return b, nil, err
		}
		doc, err := read("aws-iid-document-file", a.awsDoc)
		if err != nil {
			return nil, nil, err
		}
		sig, err := read("aws-iid-pkcs7-file", a.awsPKCS7)
		if err != nil {
			return nil, nil, err
		}
		b, err := json.Marshal(nodeattest.AWSIIDEvidence{Document: doc, PKCS7: sig})
		return b, nil, err
	}
	return nil, nil, fmt.Errorf("--attestor %q: want one of %s", a.attestor, strings.Join(nodeattest.Names, ", "))
}

func loadSigner(path string) (crypto.Signer, error) {
	raw, err := os.ReadFile(path) //nolint:gosec // G304: the operator names the file
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(raw)
	if b == nil {
		return nil, errors.New("no PEM block")
	}
	var k any
	switch b.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	return s, nil
}

// attestBootstrap is bootstrap by node attestation.
func (e *env) attestBootstrap(ctx context.Context, a *attestFlags, bundlePath, tdName string) error {
	if bundlePath == "" {
		return errors.New("--bundle is required: the PEM root certificates of the tier0 CA")
	}
	td, err := trustDomain(tdName, bundlePath)
	if err != nil {
		return err
	}
	bundle, err := client.LoadBundleFile(bundlePath, td)
	if err != nil {
		return err
	}
	ev, respond, err := a.evidence(ctx, td.Name())
	if err != nil {
		return err
	}
	servers := e.servers
	if len(servers) == 0 {
		servers = []string{client.DefaultAddr}
	}
	svid, sels, err := client.AttestAgent(ctx, servers, td, bundle, a.attestor, ev, respond)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	dir := agentDir(e.dataDir)
	if err := client.WriteSVIDFiles(dir, svid, bundle); err != nil {
		return err
	}
	if err := writeConfig(dir, agentConfig{Servers: servers, TrustDomain: td.Name()}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s\texpires %s\t%s\tselectors %s\n", svid.ID, svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339), dir, strings.Join(sels, ","))
	return nil
}
