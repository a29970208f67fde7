package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tier0-ca/tier0/internal/nodeattest/attesttest"
)

// TestNodeAttestationEC2Selectors: with ec2_api in the server's config
// file, an aws_iid attestation carries the instance's EC2 tags, security
// groups and IAM role (the server process's AWS SDK against a local
// endpoint speaking EC2's and IAM's wire protocols); a node-selector entry
// on a tag grants its ID to the tagged instance's agent and not the
// other's; an instance EC2 does not know is PermissionDenied, and with EC2
// unreachable the attestation is refused (Unavailable) with a decision row
// naming the call, never granted with fewer selectors.
func TestNodeAttestationEC2Selectors(t *testing.T) {
	dir := t.TempDir()
	file := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	awsCA := attesttest.NewCA(t, "aws")
	ec2 := attesttest.NewEC2(t, "AKIDE2E",
		attesttest.EC2Instance{Account: "111122223333", ID: "i-0web", Tags: map[string]string{"role": "web"}, SecurityGroups: map[string]string{"sg-0web": "web"},
			Profile: "arn:aws:iam::111122223333:instance-profile/web", Roles: []string{"arn:aws:iam::111122223333:role/web"}},
		attesttest.EC2Instance{Account: "111122223333", ID: "i-0db", Tags: map[string]string{"role": "db"}})
	config := file("tier0.yaml", []byte(`
attestor-aws-iid:
  region_certs:
    us-east-1: `+file("aws.pem", awsCA.PEM())+`
  account_allow_list: ["111122223333"]
  ec2_api:
    ec2_endpoint: `+ec2.URL+`
    iam_endpoint: `+ec2.URL+`
    access_key_id: AKIDE2E
    secret_access_key_file: `+file("aws-secret", []byte("e2e-secret\n"))+`
`))
	data := t.TempDir()
	srv := startServer(t, data, "--config", config)
	bundle := filepath.Join(data, "bundle.pem")
	bootstrap := func(instance string) (string, string, error) {
		doc := attesttest.AWSDocument("111122223333", "us-east-1", instance)
		agentDir := t.TempDir()
		out, err := runBin("tier0-agent", "bootstrap", "--server", srv.addr(), "--bundle", bundle, "--data-dir", agentDir, "--attestor", "aws_iid",
			"--aws-iid-document-file", file(instance+".json", doc), "--aws-iid-pkcs7-file", file(instance+".p7", []byte(attesttest.SignAWS(t, awsCA, doc))))
		return agentDir, out, err
	}
	web, out, err := bootstrap("i-0web")
	if err != nil {
		t.Fatalf("bootstrap web: %v\n%s", err, out)
	}
	for _, s := range []string{"aws_iid:tag:role:web", "aws_iid:sg:id:sg-0web", "aws_iid:sg:name:web", "aws_iid:iamrole:arn:aws:iam::111122223333:role/web"} {
		if !strings.Contains(out, s) {
			t.Fatalf("web agent's selectors lack %s:\n%s", s, out)
		}
	}
	db, out, err := bootstrap("i-0db")
	if err != nil || !strings.Contains(out, "aws_iid:tag:role:db") {
		t.Fatalf("bootstrap db: %v\n%s", err, out)
	}
	if _, _, err := bootstrap("i-0gone"); err == nil || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("unknown instance: %v", err)
	}

	must(srv.cli("entry", "create", "--node-selector", "aws_iid:tag:role:web", "--spiffe-id", "spiffe://example.org/web-fleet"))
	svids := t.TempDir()
	must(runBin("tier0-agent", "fetch", "--data-dir", web, "--out", svids))
	s := loadSVID(t, svids, "spiffe://example.org/web-fleet")
	if _, _, err := x509svid.Verify(s.Certificates, srv.bundle()); err != nil {
		t.Fatal(err)
	}
	dbOut := t.TempDir()
	_, _ = runBin("tier0-agent", "fetch", "--data-dir", db, "--out", dbOut)
	if hasSVIDFile(dbOut) {
		t.Fatal("the db instance's agent got the web tag's SVID")
	}

	ec2.Close()
	if _, out, err := bootstrap("i-0web2"); err == nil || !strings.Contains(strings.ToLower(err.Error()), "unavailable") || !strings.Contains(err.Error(), "DescribeInstances") {
		t.Fatalf("EC2 down: want Unavailable naming DescribeInstances, got %v\n%s", err, out)
	}
	pollUntil(t, 30*time.Second, func() bool {
		raw, err := srv.cli("audit", "decisions", "--denied", "-o", "json")
		return err == nil && strings.Contains(raw, "DescribeInstances i-0web2") && strings.Contains(raw, "i-0gone")
	})
}
