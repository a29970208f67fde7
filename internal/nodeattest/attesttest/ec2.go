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
	key      string
	byID     map[string]EC2Instance
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
	signed := func(service string) bool {
		return strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential="+e.key+"/") && strings.Contains(auth, "/"+service+"/aws4_request")
	}
	x := html.EscapeString
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	switch r.PostForm.Get("Action") {
	case "DescribeInstances":
		if !signed("ec2") || r.PostForm.Get("Version") != "2016-11-15" {
			w.WriteHeader(http.StatusForbidden)
			_, _ = fmt.Fprint(w, `<Response><Errors><Error><Code>AuthFailure</Code><Message>AWS was not able to validate the provided access credentials</Message></Error></Errors><RequestID>1</RequestID></Response>`)
			return
		}
		id := r.PostForm.Get("InstanceId.1")
		in, ok := e.byID[id]
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
		if !signed("iam") || !found || e.IAMFails.Load() {
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
