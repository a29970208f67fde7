package nodeattest

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"
)

// aws_iid: the EC2 instance identity document and its PKCS#7 signature
// (IMDS /latest/dynamic/instance-identity/document and .../rsa2048),
// verified against AWS's public certificate for the document's region.
// AWS publishes one certificate per region (EC2 User Guide, "AWS public
// certificates for instance identity document signatures", the RSA-2048
// certificates); tier0 ships them (awscerts/, with their source and how
// to update them) and uses them unless region_certs is set.
//
// Config:
//
//	region_certs:                       # optional: region -> PEM file; "*" for any region.
//	  us-east-1: /etc/tier0/aws/us-east-1.pem  # Set: replaces the shipped certificates
//	account_allow_list: ["123456789012"]  # required
//	region_allow_list: [us-east-1]        # optional: default every region with a certificate
//	allow_reattestation: false   # true: an instance may attest again (its document never expires: replayable)
//	replay_window: 720h          # else an instance attests once per window (default 720h, at most 8760h)
//	agent_name: "aws_iid.{{.AccountID}}.{{.Region}}.{{.InstanceID}}"
//	ec2_api: {ec2_endpoint, iam_endpoint, ...}  # optional: tag, security group, IAM role selectors (awsapi.go)
type awsIIDConfig struct {
	RegionCerts        map[string]string `yaml:"region_certs"`
	Accounts           []string          `yaml:"account_allow_list"`
	Regions            []string          `yaml:"region_allow_list"`
	AllowReattestation bool              `yaml:"allow_reattestation"`
	ReplayWindow       time.Duration     `yaml:"replay_window"`
	AgentName          string            `yaml:"agent_name"`
	EC2API             *awsAPIConfig     `yaml:"ec2_api"` // tag, security group, IAM role selectors (awsapi.go)
}

// AWSIIDEvidence is the evidence an agent sends: the document as IMDS
// returned it and the base64 PKCS#7 signature (rsa2048).
type AWSIIDEvidence struct {
	Document string `json:"document"`
	PKCS7    string `json:"pkcs7"`
}

// awsDocument holds the fields of an identity document that are used.
type awsDocument struct {
	AccountID        string `json:"accountId"`
	Region           string `json:"region"`
	InstanceID       string `json:"instanceId"`
	AvailabilityZone string `json:"availabilityZone"`
	ImageID          string `json:"imageId"`
	InstanceType     string `json:"instanceType"`
}

type awsIID struct {
	cfg    awsIIDConfig
	certs  map[string][]*x509.Certificate
	name   nameTemplate
	clock  func() time.Time
	window time.Duration
	api    *awsAPI
}

func newAWSIID(cfg Config, text string) (Attestor, error) {
	a := &awsIID{certs: map[string][]*x509.Certificate{}, clock: cfg.Clock}
	if err := decodeSection(text, &a.cfg); err != nil {
		return nil, err
	}
	if len(a.cfg.Accounts) == 0 {
		return nil, errors.New("config: account_allow_list is required")
	}
	var err error
	if a.window, err = replayWindow(a.cfg.ReplayWindow); err != nil {
		return nil, err
	}
	if a.cfg.EC2API != nil {
		if a.api, err = newAWSAPI(*a.cfg.EC2API); err != nil {
			return nil, err
		}
	}
	if len(a.cfg.RegionCerts) == 0 {
		// AWS's published certificates, shipped with tier0
		// (awscerts/README.md).
		certs, err := AWSEmbeddedCerts()
		if err != nil {
			return nil, err
		}
		a.certs = certs
	}
	for _, region := range slices.Sorted(maps.Keys(a.cfg.RegionCerts)) {
		certs, err := loadPEMCerts(a.cfg.RegionCerts[region])
		if err != nil {
			return nil, fmt.Errorf("region_certs %s: %w", region, err)
		}
		a.certs[region] = certs
	}
	if a.name, err = parseNameTemplate(a.cfg.AgentName, "aws_iid.{{.AccountID}}.{{.Region}}.{{.InstanceID}}"); err != nil {
		return nil, err
	}
	return a, nil
}

func loadPEMCerts(path string) ([]*x509.Certificate, error) {
	raw, err := readFileLimited(path)
	if err != nil {
		return nil, err
	}
	certs, err := parsePEMCerts(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

func (*awsIID) Name() string { return AWSIID }

func (a *awsIID) Attest(ctx context.Context, evidence []byte, _ ChallengeFunc) (Result, error) {
	var ev AWSIIDEvidence
	if err := strictJSON(evidence, &ev); err != nil {
		return Result{}, err
	}
	doc, sig, err := parseAWSEvidence(ev)
	if err != nil {
		return Result{}, err
	}
	var d awsDocument
	if err := json.Unmarshal([]byte(ev.Document), &d); err != nil {
		return Result{}, bad("aws_iid: document: %v", err)
	}
	if d.AccountID == "" || d.Region == "" || d.InstanceID == "" {
		return Result{}, bad("aws_iid: document: accountId, region and instanceId are required")
	}
	certs, ok := a.certs[d.Region]
	if !ok {
		certs, ok = a.certs["*"]
	}
	if !ok {
		return Result{}, denied("aws_iid: no certificate configured for region %q", d.Region)
	}
	if err := verifyAWSSignature(sig, doc, certs); err != nil {
		return Result{}, err
	}
	// Allow-lists only after the signature: the document's claims are
	// the signer's from here on.
	if !allowed(a.cfg.Accounts, d.AccountID) {
		return Result{}, denied("aws_iid: account %q is not allowed", d.AccountID)
	}
	if len(a.cfg.Regions) > 0 && !allowed(a.cfg.Regions, d.Region) {
		return Result{}, denied("aws_iid: region %q is not allowed", d.Region)
	}
	name, err := a.name.name(struct{ AccountID, Region, InstanceID string }{segment(d.AccountID), segment(d.Region), segment(d.InstanceID)})
	if err != nil {
		return Result{}, err
	}
	p := "aws_iid:"
	sels := []string{p + "account:" + d.AccountID, p + "region:" + d.Region, p + "instance-id:" + d.InstanceID}
	for k, v := range map[string]string{"az": d.AvailabilityZone, "image-id": d.ImageID, "instance-type": d.InstanceType} {
		if v != "" {
			sels = append(sels, p+k+":"+v)
		}
	}
	if a.api != nil {
		more, err := a.api.selectors(ctx, d)
		if err != nil {
			return Result{}, err
		}
		sels = append(sels, more...)
	}
	var replay []ReplayKey
	if !a.cfg.AllowReattestation {
		replay = []ReplayKey{{Key: "aws_iid:instance:" + d.AccountID + ":" + d.InstanceID, Until: a.clock().Add(a.window)}}
	}
	return Result{AgentName: name, Selectors: sortedSelectors(sels), Replay: replay,
		Detail: fmt.Sprintf("account %s, region %s, instance %s", d.AccountID, d.Region, d.InstanceID)}, nil
}

// parseAWSEvidence returns the document bytes and the parsed signature.
func parseAWSEvidence(ev AWSIIDEvidence) ([]byte, *pkcs7.PKCS7, error) {
	if ev.Document == "" || ev.PKCS7 == "" {
		return nil, nil, bad("aws_iid: document and pkcs7 are required")
	}
	b64 := strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' {
			return -1
		}
		return r
	}, strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(ev.PKCS7), "-----BEGIN PKCS7-----"), "-----END PKCS7-----")))
	der, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, nil, bad("aws_iid: pkcs7: %v", err)
	}
	p7, err := parsePKCS7(der)
	if err != nil {
		return nil, nil, bad("aws_iid: pkcs7: %v", err)
	}
	return []byte(ev.Document), p7, nil
}

// parsePKCS7 guards the parser against panics on hostile input.
func parsePKCS7(der []byte) (p7 *pkcs7.PKCS7, err error) {
	defer func() {
		if r := recover(); r != nil {
			p7, err = nil, fmt.Errorf("unparseable (%v)", r)
		}
	}()
	return pkcs7.Parse(der)
}

// verifyAWSSignature checks that p7 signs doc with one of certs (and
// only those: any certificates the signature carries are ignored).
func verifyAWSSignature(p7 *pkcs7.PKCS7, doc []byte, certs []*x509.Certificate) error {
	if len(p7.Content) == 0 {
		p7.Content = doc // detached
	} else if !bytes.Equal(bytes.TrimSpace(p7.Content), bytes.TrimSpace(doc)) {
		return denied("aws_iid: the signature is over another document")
	}
	var errs []error
	for _, c := range certs {
		p7.Certificates = []*x509.Certificate{c}
		if err := safeVerify(p7); err != nil {
			errs = append(errs, err)
			continue
		}
		return nil
	}
	return denied("aws_iid: signature: %v", errors.Join(errs...))
}

func safeVerify(p7 *pkcs7.PKCS7) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("unverifiable (%v)", r)
		}
	}()
	return p7.Verify()
}
