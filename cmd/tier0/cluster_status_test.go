package main

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
		errT := printClusterStatus(&table, tc.st, outTable)
		errJ := printClusterStatus(&js, tc.st, outJSON)
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
