package nodeattest

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tier0-ca/tier0/internal/nodeattest/attesttest"
)

// ec2Server speaks the EC2 Query protocol (DescribeInstances, XML) and the
// IAM Query protocol (GetInstanceProfile) as AWS does, refusing requests
// that are not SigV4-signed for the right service and region.
func ec2Server(t *testing.T, iamFails *atomic.Bool) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		auth := r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
		switch r.PostForm.Get("Action") {
		case "DescribeInstances":
			if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDTEST/") || !strings.Contains(auth, "/us-east-1/ec2/aws4_request") || r.PostForm.Get("Version") != "2016-11-15" {
				w.WriteHeader(http.StatusForbidden)
				_, _ = w.Write([]byte(`<Response><Errors><Error><Code>AuthFailure</Code><Message>not signed</Message></Error></Errors><RequestID>1</RequestID></Response>`))
				return
			}
			if id := r.PostForm.Get("InstanceId.1"); id != "i-0abc" {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>The instance ID '` + id + `' does not exist</Message></Error></Errors><RequestID>2</RequestID></Response>`))
				return
			}
			_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>3</requestId>
  <reservationSet><item>
    <reservationId>r-1</reservationId><ownerId>111122223333</ownerId>
    <instancesSet><item>
      <instanceId>i-0abc</instanceId><imageId>ami-1</imageId>
      <instanceState><code>16</code><name>running</name></instanceState>
      <groupSet><item><groupId>sg-0123</groupId><groupName>web</groupName></item></groupSet>
      <tagSet><item><key>role</key><value>web</value></item><item><key>env</key><value>prod</value></item></tagSet>
      <iamInstanceProfile><arn>arn:aws:iam::111122223333:instance-profile/fleet/web-profile</arn><id>AIPAEXAMPLE</id></iamInstanceProfile>
    </item></instancesSet>
  </item></reservationSet>
</DescribeInstancesResponse>`))
		case "GetInstanceProfile":
			if !strings.Contains(auth, "/us-east-1/iam/aws4_request") || r.PostForm.Get("InstanceProfileName") != "web-profile" || iamFails.Load() {
				w.WriteHeader(http.StatusForbidden)
				_, _ = w.Write([]byte(`<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized to perform iam:GetInstanceProfile</Message></Error><RequestId>4</RequestId></ErrorResponse>`))
				return
			}
			_, _ = w.Write([]byte(`<GetInstanceProfileResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">
  <GetInstanceProfileResult><InstanceProfile>
    <InstanceProfileId>AIPAEXAMPLE</InstanceProfileId>
    <Roles><member><Path>/</Path><Arn>arn:aws:iam::111122223333:role/web</Arn><RoleName>web</RoleName><RoleId>AROAEXAMPLE</RoleId><CreateDate>2024-01-01T00:00:00Z</CreateDate></member></Roles>
    <InstanceProfileName>web-profile</InstanceProfileName><Path>/fleet/</Path>
    <Arn>arn:aws:iam::111122223333:instance-profile/fleet/web-profile</Arn><CreateDate>2024-01-01T00:00:00Z</CreateDate>
  </InstanceProfile></GetInstanceProfileResult>
  <ResponseMetadata><RequestId>5</RequestId></ResponseMetadata>
</GetInstanceProfileResponse>`))
		default:
			http.Error(w, "unknown action", http.StatusBadRequest)
		}
	}))
}

// TestAWSIIDEC2API: with ec2_api the real SDK clients (EC2, IAM) read the
// instance's tags, security groups and instance-profile roles from a
// local endpoint speaking AWS's wire protocols; an instance the API does
// not know is denied, and an API that refuses or does not answer refuses
// the attestation (ErrLookup) instead of attesting with fewer selectors.
func TestAWSIIDEC2API(t *testing.T) {
	var iamFails atomic.Bool
	srv := ec2Server(t, &iamFails)
	defer srv.Close()
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
	iamFails.Store(true)
	if _, err := attest("i-0abc"); !errors.Is(err, ErrLookup) || !strings.Contains(err.Error(), "GetInstanceProfile") {
		t.Fatalf("IAM refused: %v", err)
	}
	srv.Close()
	if _, err := attest("i-0abc"); !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrLookup) || !strings.Contains(err.Error(), "DescribeInstances") {
		t.Fatalf("EC2 API down: %v", err)
	}
}
