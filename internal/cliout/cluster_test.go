package cliout

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// TestClusterStatusProblems: the exit status of `tier0 cluster status`
// follows the leader and the voters only (a non-voter's trouble is shown,
// not fatal), and -o json says the same.
func TestClusterStatusProblems(t *testing.T) {
	member := func(id, suffrage string, healthy bool, errText string) *tier0v1.MemberStatus {
		return &tier0v1.MemberStatus{NodeId: id, Suffrage: suffrage, Healthy: healthy, Error: errText, NotReady: []string{"signer: down"}, LastContactMs: -1}
	}
	for _, tc := range []struct {
		name string
		st   *tier0v1.ClusterStatusResponse
		want string // "" = healthy
	}{
		{"healthy", &tier0v1.ClusterStatusResponse{LeaderId: "n1", MemberStatus: []*tier0v1.MemberStatus{
			member("n1", "Voter", true, ""), member("n2", "Nonvoter", false, "")}}, ""},
		{"no leader", &tier0v1.ClusterStatusResponse{MemberStatus: []*tier0v1.MemberStatus{member("n1", "Voter", true, "")}}, "no leader"},
		{"unhealthy voter", &tier0v1.ClusterStatusResponse{LeaderId: "n1", MemberStatus: []*tier0v1.MemberStatus{
			member("n1", "Voter", true, ""), member("n2", "Voter", false, "")}}, "voter n2 not ready: signer: down"},
		{"unreachable voter", &tier0v1.ClusterStatusResponse{LeaderId: "n1", MemberStatus: []*tier0v1.MemberStatus{
			member("n1", "Voter", true, ""), member("n3", "Voter", false, "unreachable: refused")}}, "voter n3: unreachable: refused"},
	} {
		var table, js bytes.Buffer
		errT := ClusterStatus(&table, tc.st, Table)
		errJ := ClusterStatus(&js, tc.st, JSON)
		var out struct {
			Healthy  bool     `json:"healthy"`
			Problems []string `json:"problems"`
			Members  []any    `json:"members"`
		}
		if err := json.Unmarshal(js.Bytes(), &out); err != nil {
			t.Fatalf("%s: -o json: %v\n%s", tc.name, err, js.String())
		}
		if tc.want == "" {
			if errT != nil || errJ != nil || !out.Healthy || len(out.Problems) != 0 || strings.Contains(table.String(), "PROBLEM") {
				t.Errorf("%s: %v %v %+v\n%s", tc.name, errT, errJ, out, table.String())
			}
			continue
		}
		if errT == nil || !strings.Contains(errT.Error(), tc.want) || errJ == nil || out.Healthy ||
			len(out.Problems) != 1 || !strings.Contains(table.String(), "PROBLEM: ") || len(out.Members) != len(tc.st.MemberStatus) {
			t.Errorf("%s: %v / %v / %+v\n%s", tc.name, errT, errJ, out, table.String())
		}
	}
}

// TestClusterStatusGolden pins the table and JSON of `tier0 cluster status`.
func TestClusterStatusGolden(t *testing.T) {
	st := &tier0v1.ClusterStatusResponse{NodeId: "n2", LeaderId: "n1", Term: 3, JournalSeq: 10, ExportedSeq: 8, ExportLag: 2,
		MemberStatus: []*tier0v1.MemberStatus{
			{NodeId: "n1", ApiAddress: "127.0.0.1:8443", RaftAddress: "127.0.0.1:8444", Suffrage: "Voter", State: "Leader", LastContactMs: 0,
				AppliedIndex: 12, CommitIndex: 12, Healthy: true, Version: "v1.2.3 (rev 0123abcd, go1.26)"},
			{NodeId: "n2", RaftAddress: "127.0.0.1:9444", Suffrage: "Nonvoter", LastContactMs: 1500, AppliedIndex: 11, CommitIndex: 12, Lag: 1, Error: "unreachable: refused"},
		}}
	var b bytes.Buffer
	if err := ClusterStatus(&b, st, Table); err != nil {
		t.Fatal(err)
	}
	golden(t, "table", b.String(), `leader n1, term 3 (answered by n2); journal seq 10, exported 8, export lag 2

NODE  API             RAFT            SUFFRAGE  STATE   LEADER  LAST CONTACT  APPLIED  COMMIT  LAG  HEALTHY      VERSION
n1    127.0.0.1:8443  127.0.0.1:8444  Voter     Leader  *       0s            12       12      0    yes          v1.2.3 (rev 0123abcd)
n2    -               127.0.0.1:9444  Nonvoter  -               -             11       12      1    unreachable  -
`)
	b.Reset()
	if err := ClusterStatus(&b, st, JSON); err != nil {
		t.Fatal(err)
	}
	var out struct {
		Members []map[string]any `json:"members"`
	}
	if err := json.Unmarshal(b.Bytes(), &out); err != nil || len(out.Members) != 2 {
		t.Fatalf("json: %v\n%s", err, b.String())
	}
	if m := out.Members[0]; m["leader"] != true || m["applied_index"] != float64(12) || m["api_address"] != "127.0.0.1:8443" || out.Members[1]["leader"] != false {
		t.Errorf("json member: %v", out.Members)
	}
}
