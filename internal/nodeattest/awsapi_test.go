package nodeattest

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/tier0-ca/tier0/internal/nodeattest/attesttest"
)

// TestAWSIIDEC2API: with ec2_api the real SDK clients (EC2, IAM) read the
// instance's tags, security groups and instance-profile roles from a
// local endpoint speaking AWS's wire protocols; an instance the API does
// not know is denied, and an API that refuses or does not answer refuses
// the attestation (ErrLookup) instead of attesting with fewer selectors.
func TestAWSIIDEC2API(t *testing.T) {
	srv := attesttest.NewEC2(t, "AKIDTEST", attesttest.EC2Instance{Account: "111122223333", ID: "i-0abc",
		Tags: map[string]string{"role": "web", "env": "prod"}, SecurityGroups: map[string]string{"sg-0123": "web"},
		Profile: "arn:aws:iam::111122223333:instance-profile/fleet/web-profile", Roles: []string{"arn:aws:iam::111122223333:role/web"}})
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	f := newFixture(t)
	dir := t.TempDir()
	section := "region_certs:\n  us-east-1: " + write(t, dir, "aws.pem", f.awsCA.PEM()) + "\naccount_allow_list: [\"111122223333\"]\n" +
		"allow_reattestation: true\nec2_api:\n  ec2_endpoint: " + srv.URL + "\n  iam_endpoint: " + srv.URL +
		"\n  access_key_id: AKIDTEST\n  secret_access_key_file: " + write(t, dir, "secret", []byte("s3cret\n")) + "\n"
	reg, err := New(Config{TrustDomain: td, Sections: map[string]string{AWSIID: section}})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := reg.Get(AWSIID)
	attest := func(instance string) (Result, error) {
		doc := attesttest.AWSDocument("111122223333", "us-east-1", instance)
		return a.Attest(t.Context(), mustJSON(t, AWSIIDEvidence{Document: string(doc), PKCS7: attesttest.SignAWS(t, f.awsCA, doc)}), nil)
	}
	res, err := attest("i-0abc")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"aws_iid:tag:role:web", "aws_iid:tag:env:prod", "aws_iid:sg:id:sg-0123", "aws_iid:sg:name:web",
		"aws_iid:iamrole:arn:aws:iam::111122223333:role/web", "aws_iid:account:111122223333"} {
		if !slices.Contains(res.Selectors, s) {
			t.Errorf("selectors %v lack %s", res.Selectors, s)
		}
	}
	if _, err := attest("i-0gone"); !errors.Is(err, ErrDenied) || !errors.Is(err, ErrLookup) || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("unknown instance: %v", err)
	}
	srv.IAMFails.Store(true)
	if _, err := attest("i-0abc"); !errors.Is(err, ErrLookup) || !strings.Contains(err.Error(), "GetInstanceProfile") {
		t.Fatalf("IAM refused: %v", err)
	}
	srv.Close()
	if _, err := attest("i-0abc"); !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrLookup) || !strings.Contains(err.Error(), "DescribeInstances") {
		t.Fatalf("EC2 API down: %v", err)
	}
}

// TestAWSIIDEC2APIAssumeRole: with assume_role the server's credentials
// assume arn:aws:iam::ACCOUNT:role/NAME in the document's account (STS
// AssumeRole Query XML against the local endpoint) and read EC2 and IAM
// with the assumed key, one account after another; a role STS refuses
// refuses the attestation.
func TestAWSIIDEC2APIAssumeRole(t *testing.T) {
	srv := attesttest.NewEC2(t, "AKIDTEST",
		attesttest.EC2Instance{Account: "111122223333", ID: "i-0a", Tags: map[string]string{"role": "web"},
			Profile: "arn:aws:iam::111122223333:instance-profile/web", Roles: []string{"arn:aws:iam::111122223333:role/web"}},
		attesttest.EC2Instance{Account: "444455556666", ID: "i-0b", Tags: map[string]string{"role": "db"}})
	srv.AssumeRole = "tier0-reader"
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	f := newFixture(t)
	dir := t.TempDir()
	section := func(role string) string {
		return "region_certs:\n  us-east-1: " + write(t, dir, "aws.pem", f.awsCA.PEM()) + "\naccount_allow_list: [\"111122223333\", \"444455556666\"]\n" +
			"allow_reattestation: true\nec2_api:\n  ec2_endpoint: " + srv.URL + "\n  iam_endpoint: " + srv.URL + "\n  sts_endpoint: " + srv.URL +
			"\n  assume_role: " + role + "\n  access_key_id: AKIDTEST\n  secret_access_key_file: " + write(t, dir, "secret", []byte("s3cret\n")) + "\n"
	}
	attestWith := func(a Attestor, account, instance string) (Result, error) {
		doc := attesttest.AWSDocument(account, "us-east-1", instance)
		return a.Attest(t.Context(), mustJSON(t, AWSIIDEvidence{Document: string(doc), PKCS7: attesttest.SignAWS(t, f.awsCA, doc)}), nil)
	}
	reg, err := New(Config{TrustDomain: td, Sections: map[string]string{AWSIID: section("tier0-reader")}})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := reg.Get(AWSIID)
	res, err := attestWith(a, "111122223333", "i-0a")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(res.Selectors, "aws_iid:tag:role:web") || !slices.Contains(res.Selectors, "aws_iid:iamrole:arn:aws:iam::111122223333:role/web") {
		t.Fatalf("selectors %v", res.Selectors)
	}
	if res, err = attestWith(a, "444455556666", "i-0b"); err != nil || !slices.Contains(res.Selectors, "aws_iid:tag:role:db") {
		t.Fatalf("second account: %v %v", res.Selectors, err)
	}
	if _, err := New(Config{TrustDomain: td, Sections: map[string]string{AWSIID: section("arn:aws:iam::1:role/x")}}); err == nil || !strings.Contains(err.Error(), "assume_role") {
		t.Fatalf("role ARN as assume_role: %v", err)
	}
	reg, err = New(Config{TrustDomain: td, Sections: map[string]string{AWSIID: section("other-role")}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := reg.Get(AWSIID)
	if _, err := attestWith(b, "111122223333", "i-0a"); !errors.Is(err, ErrLookup) || !strings.Contains(err.Error(), "AssumeRole") {
		t.Fatalf("refused role: %v", err)
	}
}
