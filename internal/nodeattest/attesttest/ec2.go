package attesttest

import (
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
)

// EC2Instance is what the fake EC2 API knows of one instance.
type EC2Instance struct {
	Account, ID    string
	Tags           map[string]string
	SecurityGroups map[string]string // group ID -> name
	Profile        string            // instance profile ARN (arn:aws:iam::ACCOUNT:instance-profile/NAME)
	Roles          []string          // the profile's role ARNs
}

// EC2 is a local endpoint speaking the EC2 Query protocol
// (DescribeInstances, XML) and the IAM Query protocol
// (GetInstanceProfile) as AWS does, refusing requests that are not SigV4
// signed with AccessKeyID for the right service.
type EC2 struct {
	*httptest.Server
	IAMFails atomic.Bool // GetInstanceProfile answers AccessDenied
	// AssumeRole, when set, is the role name STS AssumeRole accepts in
	// every account (arn:aws:iam::ACCOUNT:role/NAME, signed with the
	// server's key); it issues the key "ASIA"+ACCOUNT, and the instances
	// of an account are then only readable with that key.
	AssumeRole string
	key        string
	byID       map[string]EC2Instance
}

// NewEC2 starts the fake; accessKeyID is the key requests must be signed with.
func NewEC2(t testing.TB, accessKeyID string, instances ...EC2Instance) *EC2 {
	e := &EC2{key: accessKeyID, byID: map[string]EC2Instance{}}
	for _, in := range instances {
		e.byID[in.ID] = in
	}
	e.Server = httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(e.Close)
	return e
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (e *EC2) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	auth := r.Header.Get("Authorization")
	signedBy := func(key, service string) bool {
		return strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential="+key+"/") && strings.Contains(auth, "/"+service+"/aws4_request")
	}
	keyFor := func(account string) string {
		if e.AssumeRole != "" {
			return "ASIA" + account
		}
		return e.key
	}
	x := html.EscapeString
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	switch r.PostForm.Get("Action") {
	case "AssumeRole":
		arn := r.PostForm.Get("RoleArn")
		account, role, _ := strings.Cut(strings.TrimPrefix(arn, "arn:aws:iam::"), ":role/")
		if !signedBy(e.key, "sts") || e.AssumeRole == "" || role != e.AssumeRole || len(account) != 12 {
			w.WriteHeader(http.StatusForbidden)
			_, _ = fmt.Fprintf(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized to perform sts:AssumeRole on %s</Message></Error><RequestId>6</RequestId></ErrorResponse>`, x(arn))
			return
		}
		_, _ = fmt.Fprintf(w, `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials><AccessKeyId>ASIA%s</AccessKeyId><SecretAccessKey>assumed-secret</SecretAccessKey><SessionToken>assumed-session</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROAEXAMPLE:%s</AssumedRoleId><Arn>arn:aws:sts::%s:assumed-role/%s/%s</Arn></AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>7</RequestId></ResponseMetadata></AssumeRoleResponse>`,
			x(account), x(r.PostForm.Get("RoleSessionName")), x(account), x(role), x(r.PostForm.Get("RoleSessionName")))
	case "DescribeInstances":
		id := r.PostForm.Get("InstanceId.1")
		in, ok := e.byID[id]
		if !strings.Contains(auth, "/ec2/aws4_request") || (ok && !signedBy(keyFor(in.Account), "ec2")) || (!ok && !signedBy(e.key, "ec2") && !strings.Contains(auth, "Credential=ASIA")) || r.PostForm.Get("Version") != "2016-11-15" {
			w.WriteHeader(http.StatusForbidden)
			_, _ = fmt.Fprint(w, `<Response><Errors><Error><Code>AuthFailure</Code><Message>AWS was not able to validate the provided access credentials</Message></Error></Errors><RequestID>1</RequestID></Response>`)
			return
		}
		if !ok {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = fmt.Fprintf(w, `<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>The instance ID '%s' does not exist</Message></Error></Errors><RequestID>2</RequestID></Response>`, x(id))
			return
		}
		var b strings.Builder
		fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>3</requestId><reservationSet><item>
<reservationId>r-1</reservationId><ownerId>%s</ownerId><instancesSet><item><instanceId>%s</instanceId>
<instanceState><code>16</code><name>running</name></instanceState><groupSet>`, x(in.Account), x(in.ID))
		for _, g := range sortedKeys(in.SecurityGroups) {
			fmt.Fprintf(&b, `<item><groupId>%s</groupId><groupName>%s</groupName></item>`, x(g), x(in.SecurityGroups[g]))
		}
		b.WriteString(`</groupSet><tagSet>`)
		for _, k := range sortedKeys(in.Tags) {
			fmt.Fprintf(&b, `<item><key>%s</key><value>%s</value></item>`, x(k), x(in.Tags[k]))
		}
		b.WriteString(`</tagSet>`)
		if in.Profile != "" {
			fmt.Fprintf(&b, `<iamInstanceProfile><arn>%s</arn><id>AIPAEXAMPLE</id></iamInstanceProfile>`, x(in.Profile))
		}
		b.WriteString(`</item></instancesSet></item></reservationSet></DescribeInstancesResponse>`)
		_, _ = fmt.Fprint(w, b.String())
	case "GetInstanceProfile":
		name := r.PostForm.Get("InstanceProfileName")
		var in EC2Instance
		found := false
		for _, i := range e.byID {
			if i.Profile != "" && i.Profile[strings.LastIndex(i.Profile, "/")+1:] == name {
				in, found = i, true
			}
		}
		if !found || !signedBy(keyFor(in.Account), "iam") || e.IAMFails.Load() {
			w.WriteHeader(http.StatusForbidden)
			_, _ = fmt.Fprint(w, `<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized to perform iam:GetInstanceProfile</Message></Error><RequestId>4</RequestId></ErrorResponse>`)
			return
		}
		var b strings.Builder
		b.WriteString(`<GetInstanceProfileResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><GetInstanceProfileResult><InstanceProfile><InstanceProfileId>AIPAEXAMPLE</InstanceProfileId><Roles>`)
		for _, role := range in.Roles {
			fmt.Fprintf(&b, `<member><Path>/</Path><Arn>%s</Arn><RoleName>%s</RoleName><RoleId>AROAEXAMPLE</RoleId><CreateDate>2024-01-01T00:00:00Z</CreateDate></member>`, x(role), x(role[strings.LastIndex(role, "/")+1:]))
		}
		fmt.Fprintf(&b, `</Roles><InstanceProfileName>%s</InstanceProfileName><Path>/</Path><Arn>%s</Arn><CreateDate>2024-01-01T00:00:00Z</CreateDate></InstanceProfile></GetInstanceProfileResult><ResponseMetadata><RequestId>5</RequestId></ResponseMetadata></GetInstanceProfileResponse>`, x(name), x(in.Profile))
		_, _ = fmt.Fprint(w, b.String())
	default:
		http.Error(w, "unknown action", http.StatusBadRequest)
	}
}
