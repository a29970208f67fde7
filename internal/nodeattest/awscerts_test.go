package nodeattest

import (
	"crypto/rsa"
	"slices"
	"testing"
	"time"
)

// commercialRegions are the AWS commercial (aws partition) Regions with
// EC2 as of December 2026; each must have an embedded certificate.
var commercialRegions = []string{
	"af-south-1", "ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
	"ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4",
	"ap-southeast-5", "ap-southeast-6", "ap-southeast-7", "ca-central-1", "ca-west-1",
	"eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2",
	"eu-west-1", "eu-west-2", "eu-west-3", "il-central-1", "me-central-1", "me-south-1",
	"mx-central-1", "sa-east-1", "us-east-1", "us-east-2", "us-west-1", "us-west-2",
}

// TestAWSEmbeddedCerts: the shipped set parses, covers every commercial
// Region (and GovCloud and China), and each certificate is AWS's
// self-signed RSA-2048 one with an intact signature (a damaged copy
// fails here) that has not expired.
func TestAWSEmbeddedCerts(t *testing.T) {
	set, err := AWSEmbeddedCerts()
	if err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(commercialRegions), "us-gov-west-1", "us-gov-east-1", "cn-north-1", "cn-northwest-1")
	for _, r := range want {
		if len(set[r]) == 0 {
			t.Errorf("no embedded certificate for %s", r)
		}
	}
	for region, certs := range set {
		if len(certs) != 1 {
			t.Errorf("%s: %d certificates, want 1", region, len(certs))
			continue
		}
		c := certs[0]
		if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
			t.Errorf("%s: self-signature: %v", region, err)
		}
		if k, ok := c.PublicKey.(*rsa.PublicKey); !ok || k.N.BitLen() != 2048 {
			t.Errorf("%s: not an RSA-2048 key", region)
		}
		if c.Subject.String() != c.Issuer.String() || len(c.Subject.Organization) == 0 || c.Subject.Organization[0] != "Amazon Web Services LLC" {
			t.Errorf("%s: subject %q issuer %q", region, c.Subject, c.Issuer)
		}
		if time.Now().After(c.NotAfter) {
			t.Errorf("%s: expired %v", region, c.NotAfter)
		}
	}
	t.Logf("%d regions embedded", len(set))
}

// TestAWSIIDDefaultsToEmbeddedCerts: without region_certs the attestor
// knows every embedded Region, so a document from one it has no test key
// for is refused on its signature, not for a missing certificate.
func TestAWSIIDDefaultsToEmbeddedCerts(t *testing.T) {
	a, err := newAWSIID(Config{Clock: time.Now}, "account_allow_list: [\"123456789012\"]\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range commercialRegions {
		if len(a.(*awsIID).certs[r]) == 0 {
			t.Errorf("aws_iid without region_certs has no certificate for %s", r)
		}
	}
}
